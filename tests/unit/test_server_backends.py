"""The choice of the test servers' back end (DAGKEEPER_TEST_SERVERS): local processes unless
containers are asked for; containers where none can run are an error naming what to do, never a
silent fall-back; and the container back end's images are the compose file's."""

from __future__ import annotations

import pytest
from containers import PG_IMAGE, ZK_IMAGE
from servers_containers import BACKEND_ENV, ZK_ENV, check_backend, choose_backend


def never_probed() -> str | None:
    raise AssertionError("the Docker engine must not be probed for the local back end")


@pytest.mark.parametrize("value", [None, "", "local", " Local ", "LOCAL"])
def test_local_is_the_default_and_needs_no_engine(value: str | None) -> None:
    env = {} if value is None else {BACKEND_ENV: value}
    assert choose_backend(env) == "local"
    assert check_backend(env, never_probed) == "local"


@pytest.mark.parametrize("value", ["containers", " Containers"])
def test_containers_when_asked_and_an_engine_answers(value: str) -> None:
    assert check_backend({BACKEND_ENV: value}, lambda: None) == "containers"


def test_containers_without_an_engine_fail_with_what_to_do() -> None:
    with pytest.raises(ValueError) as err:
        check_backend({BACKEND_ENV: "containers"}, lambda: "no Docker engine is reachable (x)")
    message = str(err.value)
    assert message.startswith(f"{BACKEND_ENV}=containers: no Docker engine is reachable (x)")
    assert f"unset {BACKEND_ENV}" in message and "Traceback" not in message


def test_an_unknown_back_end_is_refused_naming_the_variable() -> None:
    with pytest.raises(ValueError, match=rf"^{BACKEND_ENV}='docker': expected 'local'"):
        choose_backend({BACKEND_ENV: "docker"})


def test_the_images_and_settings_match_the_local_servers() -> None:
    assert PG_IMAGE.startswith("postgres:") and ZK_IMAGE.startswith("zookeeper:")
    assert ZK_ENV["ZOO_TICK_TIME"] == "500"  # as the local ZooKeeper: sessions from 1 s
    assert "maxSessionTimeout=60000" in ZK_ENV["ZOO_CFG_EXTRA"].split()  # ... to 60 s
    assert "srvr" in ZK_ENV["ZOO_4LW_COMMANDS_WHITELIST"].split(",")  # mode() asks srvr
