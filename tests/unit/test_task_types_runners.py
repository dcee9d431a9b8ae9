"""Pure pieces of the executed types: SQL parameter binding, HTTP success codes, output defanging,
the spark-submit argv and ``${name}`` substitution."""

from __future__ import annotations

import pytest

from worker.task_types.http_run import code_matches
from worker.task_types.outputs import defang
from worker.task_types.runner_common import substitute
from worker.task_types.spark import build_argv
from worker.task_types.sql_run import bind


def test_bind_turns_parameters_into_placeholders_never_text():
    sql, params = bind("SELECT * FROM t WHERE a = ${x} AND b LIKE 'p%' AND c = ${system.biz.date}",
                       {"x": "1'; DROP TABLE t; --", "system.biz.date": "20260101", "y": "unused"})  # fmt: skip
    assert sql == "SELECT * FROM t WHERE a = %(x)s AND b LIKE 'p%%' AND c = %(system.biz.date)s"
    assert params == {"x": "1'; DROP TABLE t; --", "system.biz.date": "20260101"}
    assert bind("SELECT 50 % 7", {"x": "1"}) == ("SELECT 50 % 7", None)
    with pytest.raises(ValueError, match=r"\$\{nope\}"):
        bind("SELECT ${nope}", {})


def test_http_success_codes():
    assert code_matches(204, ["2xx"]) and code_matches(500, [500]) and code_matches(301, ["301"])
    assert not code_matches(404, ["2xx", 500])


def test_data_cannot_set_outputs():
    assert "${setValue(" not in defang("x ${setValue(evil=1)} y")


def test_substitute_names_unknown_parameters():
    assert substitute({"h": ["a-${p}"]}, {"p": "1"}, "headers") == {"h": ["a-1"]}
    with pytest.raises(ValueError, match=r"headers.h: unknown parameter \$\{q\}"):
        substitute({"h": "${q}"}, {}, "headers")


def test_spark_argv():
    argv = build_argv(
        "/bin/spark-submit",
        {"name": "t", "app": "a.py", "master": "local[2]", "args": ["${d}"], "conf": {"k": "v"}},
        {"d": "2026"},
    )
    assert argv == ["/bin/spark-submit", "--master", "local[2]", "--name", "t",
                    "--conf", "k=v", "a.py", "2026"]  # fmt: skip


def test_secret_box_round_trip_passphrase_and_wrong_key(tmp_path):
    from core.crypto import SecretBox, SecretError, load_or_create_key

    key = load_or_create_key(tmp_path / "k")
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    assert load_or_create_key(tmp_path / "k") == key  # the same key on the next start
    token = SecretBox(key).encrypt("pw")
    assert "pw" not in token and SecretBox(key).decrypt(token) == "pw"
    from core.crypto import _fernet_key

    other = SecretBox(_fernet_key("any passphrase"))
    with pytest.raises(SecretError, match="DAGKEEPER_SECRET_KEY"):
        other.decrypt(token)
    assert "pw" not in repr(other)
