"""SPARK tasks through a real worker: the spark-submit argv built from the fields (checked with a
fake spark-submit), kill of the whole group, and a real local-mode word count with the ``pyspark``
package of the test extra (or a directory in DAGKEEPER_TEST_PYSPARK: ``pip install --target DIR
pyspark``): its counts, its Spark application id recorded, and a kill that ends it within 5 s."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

import psutil
import pytest
from task_type_support import Bench, gone, log_of, read_text

from core.settings import Settings
from ops.localserver import wait_for

FAKE = """#!/bin/sh
python3 -c 'import json, sys; print("ARGV " + json.dumps(sys.argv[1:]))' "$@"
if [ -n "$FAKE_SLEEP_PIDS" ]; then
    sleep 300 & echo $! > "$FAKE_SLEEP_PIDS"
    wait
fi
"""


@pytest.fixture
def fake_submit(tmp_path: Path) -> Path:
    path = tmp_path / "spark-submit"
    path.write_text(FAKE)
    path.chmod(0o755)
    return path


def argv_of(log: str) -> list[str]:
    line = next(x for x in log.splitlines() if x.startswith("ARGV "))
    return json.loads(line[5:])


def test_spark_submit_argv_from_fields_and_kill(
    bench: Bench, fake_submit: Path, settings: Settings, tmp_path: Path
) -> None:
    w = bench.start_worker(spark_submit=str(fake_submit), kill_grace_s=0.5)
    _, got = bench.run_tasks(
        [
            {"type": "SPARK", "app": "/apps/etl.jar", "main_class": "com.example.Etl",
             "master": "yarn", "deploy_mode": "cluster", "driver_memory": "2g",
             "executor_memory": "4g", "executor_cores": 2, "num_executors": 3,
             "conf": {"spark.sql.shuffle.partitions": "8"}, "jars": ["a.jar", "b.jar"],
             "args": ["--day", "${day}", "two words"], "env": {"day": "2026-01-02"}},
            {"type": "SPARK", "app": "/apps/job.py", "py_files": ["dep.zip"], "app_name": "nightly"},
            {"type": "SPARK", "app": "/apps/local.py", "master": "local[2]"},
        ],
    )  # fmt: skip
    jar, py, local = got.values()
    assert jar.state == "SUCCESS", log_of(jar)
    assert argv_of(log_of(jar)) == [
        "--master", "yarn", "--deploy-mode", "cluster", "--class", "com.example.Etl",
        "--driver-memory", "2g", "--executor-memory", "4g", "--executor-cores", "2",
        "--num-executors", "3", "--name", "t0", "--jars", "a.jar,b.jar",
        "--conf", "spark.sql.shuffle.partitions=8",
        "/apps/etl.jar", "--day", "2026-01-02", "two words",
    ]  # fmt: skip
    assert argv_of(log_of(py)) == ["--name", "nightly", "--py-files", "dep.zip", "/apps/job.py"]
    # local mode: an event log in the work dir, so that spark-submit names the application id
    events = (
        f"spark.eventLog.dir=file://{settings.exec_path}/{local.workflow_instance_id}/{local.id}"
    )
    assert argv_of(log_of(local)) == [
        "--conf", "spark.eventLog.enabled=true", "--conf", f"{events}/spark-events",
        "--master", "local[2]", "--name", "t2", "/apps/local.py",
    ]  # fmt: skip

    # kill reaches spark-submit's children (the driver JVM in real life)
    pids = tmp_path / "pids"
    ti, _ = bench.running({"type": "SPARK", "app": "x.py", "env": {"FAKE_SLEEP_PIDS": str(pids)}})
    wait_for(lambda: read_text(pids).strip(), 10 * bench.scale, what="child started")
    child = int(read_text(pids))
    assert w.kill_task(ti)
    assert bench.wait([ti], timeout=5)[ti].state == "KILL"
    wait_for(lambda: gone(child), 5, what="spark child killed")


def _pyspark_path() -> str | None:
    """A directory to put on PYTHONPATH for pyspark ('' = importable already), or None."""
    extra = os.environ.get("DAGKEEPER_TEST_PYSPARK", "")
    if extra and (Path(extra) / "pyspark").is_dir():
        return extra
    return "" if importlib.util.find_spec("pyspark") is not None else None


def test_real_spark_word_count_in_local_mode(bench: Bench, tmp_path: Path) -> None:
    path = _pyspark_path()
    if path is None or shutil.which("java") is None:
        pytest.skip(
            "real Spark run skipped: pyspark is not installed (pip install pyspark, ~450 MB, or"
            " pip install --target DIR pyspark and DAGKEEPER_TEST_PYSPARK=DIR) or java is missing"
        )
    root = Path(path) if path else Path(importlib.util.find_spec("pyspark").origin).parent.parent
    spark_home = root / "pyspark"
    submit = spark_home / "bin" / "spark-submit"
    if not submit.exists():
        submit = root / "bin" / "spark-submit"
    words = tmp_path / "words.txt"
    words.write_text("to be or not to be\nthat is the question to be\n")
    app = tmp_path / "wordcount.py"
    app.write_text(
        "import sys\nfrom pyspark.sql import SparkSession\n"
        "spark = SparkSession.builder.getOrCreate()\n"
        "rdd = spark.sparkContext.textFile(sys.argv[1])\n"
        "counts = rdd.flatMap(str.split).map(lambda w: (w, 1)).reduceByKey(lambda a, b: a + b)\n"
        "for w, n in sorted(counts.collect()):\n    print(f'COUNT {w} {n}')\n"
        "print('${setValue(words=%d)}' % sum(n for _, n in counts.collect()))\n"
        "spark.stop()\n"
    )
    env = {"SPARK_HOME": str(spark_home), "PYSPARK_PYTHON": sys.executable,
           "PYSPARK_DRIVER_PYTHON": sys.executable, **({"PYTHONPATH": path} if path else {})}  # fmt: skip
    w = bench.start_worker(spark_submit=str(submit), kill_grace_s=2)
    t0 = time.monotonic()
    _, got = bench.run_tasks(
        [{"type": "SPARK", "app": str(app), "master": "local[1]", "args": [str(words)],
          "conf": {"spark.ui.enabled": "false"}, "driver_memory": "512m", "env": env}],
        timeout=180,
    )  # fmt: skip
    (row,) = got.values()
    log = log_of(row)
    assert row.state == "SUCCESS", log[-3000:]
    assert "COUNT be 3" in log and "COUNT to 3" in log and "COUNT question 1" in log
    assert row.output["words"] == "12"
    app_id = row.output["spark_application_id"]
    assert app_id.startswith("local-") and app_id in log, row.output
    print(f"real spark word count took {time.monotonic() - t0:.1f}s")

    # kill of a running Spark job ends spark-submit, the driver JVM and its Python within 5 s
    hold = tmp_path / "hold.py"
    hold.write_text(
        "import time\nfrom pyspark.sql import SparkSession\n"
        "spark = SparkSession.builder.getOrCreate()\nprint('SPARK-READY', flush=True)\n"
        "time.sleep(300)\n"
    )
    run = bench.create(
        [{"type": "SPARK", "app": str(hold), "master": "local[1]",
          "conf": {"spark.ui.enabled": "false"}, "env": env}],
    )  # fmt: skip
    bench.push(run)
    ti = run.task_ids[0]
    pgid = bench.wait([ti], states={"RUNNING"})[ti].pid
    wait_for(lambda: "SPARK-READY" in log_of(bench.row(ti)), 120 * bench.scale, what="spark up")
    members = [p for p in psutil.process_iter() if _pgid(p.pid) == pgid]
    assert any("java" in (p.name() or "") for p in members), [p.name() for p in members]
    t1 = time.monotonic()
    assert w.kill_task(ti)
    wait_for(lambda: not any(_pgid(p.pid) == pgid for p in members), 5, what="spark group gone")
    took = time.monotonic() - t1
    killed = bench.wait([ti], timeout=5)[ti]
    assert killed.state == "KILL" and took < 5
    # the application id was recorded before the kill (the handle of a cluster-mode job)
    assert killed.output["spark_application_id"].startswith("local-"), killed.output
    print(f"spark job gone {took:.2f}s after the kill")


def _pgid(pid: int) -> int | None:
    try:
        return None if gone(pid) else os.getpgid(pid)
    except ProcessLookupError:
        return None
