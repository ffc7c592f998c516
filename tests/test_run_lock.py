"""One process at a time per run key: a second eval of the same job waits, then reuses the first's record."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

from mmbench.cli import main
from mmbench.io import RunLock
from mmbench.paths import PROJECT_ROOT

JOB = ["eval", "--model", "distmult", "--task", "nations", "--set", "epochs=2", "--quiet"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_two_concurrent_evals_train_once(env):
    cmd = [sys.executable, "-m", "mmbench.cli", *JOB]
    environ = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    procs = [subprocess.Popen(cmd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    records = sorted(env.results.rglob("*.json"))
    assert len(records) == 1 and not list(env.results.rglob("superseded"))
    assert not list(env.results.rglob("*.lock"))
    both = "".join(err for _, err in outs)
    assert "is running (pid" in both and "waiting for it to finish" in both  # the second waited, then reused
    assert json.loads(records[0].read_text())["seed"] == 0


def test_eval_waits_for_a_live_lock_and_takes_over_a_stale_one(env, capsys):
    assert main(JOB + ["--seed", "1"]) == 0  # learn the record path of this job
    record = next(env.results.rglob("*.json"))
    record.unlink()
    lock = record.with_suffix(".lock")
    lock.write_text(f"{_dead_pid()} {socket.gethostname()} 2026-01-01T00:00:00Z\n")
    assert main(JOB + ["--seed", "1"]) == 0  # stale: its process is gone
    assert record.exists() and not lock.exists()

    record.unlink()
    lock.write_text(f"{os.getpid()} {socket.gethostname()} 2026-01-01T00:00:00Z\n")  # a live holder
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(main(JOB + ["--seed", "1"])))
    worker.start()
    time.sleep(1.0)
    assert worker.is_alive() and not record.exists()
    assert f"is running (pid {os.getpid()} on {socket.gethostname()}" in capsys.readouterr().err
    lock.unlink()
    worker.join(timeout=120)
    assert result == [0] and record.exists() and not lock.exists()


def test_lock_is_released_when_the_job_fails(env, tmp_path):
    lock = RunLock(tmp_path / "k.lock")
    try:
        with lock:
            assert (tmp_path / "k.lock").read_text().split()[0] == str(os.getpid())
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert not (tmp_path / "k.lock").exists()
