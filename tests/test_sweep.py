"""mmbench sweep: sweep files, resume, retries, and fault tolerance on a local Ray (killed worker,
killed driver)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmbench.errors import ConfigError
from mmbench.results import ResultStore
from mmbench.sweep import SweepJob, iter_failures, load_sweep_file, run_sweep, spec_from_args

ADAPTER = '''
import os, time
from dataclasses import dataclass
import torch
from mmbench.api import KGCModel, TrainSchedule

@dataclass
class Config(TrainSchedule):
    epochs: int = 1
    eval_every: int = 1
    sleep: float = 0.0
    crash_seed: int = -1          # this seed's first attempt fails ...
    crash_how: str = "raise"      # ... by raising, or by killing its own process ("kill")
    marker_dir: str = ""

class Toy(KGCModel):
    Config = Config

    def setup(self, data, seed):
        c = self.config
        if seed == c.crash_seed:
            marker = os.path.join(c.marker_dir, f"crashed-{seed}")
            if not os.path.exists(marker):
                open(marker, "w").close()
                print("about to fail on purpose", flush=True)
                if c.crash_how == "kill":
                    os.kill(os.getpid(), 9)
                raise RuntimeError("planned failure")
        g = torch.Generator().manual_seed(seed)
        self.module = torch.nn.Embedding(data.num_entities, 4)
        with torch.no_grad():
            self.module.weight.copy_(torch.randn(data.num_entities, 4, generator=g))

    def train_epoch(self, epoch):
        time.sleep(self.config.sleep)
        return 0.0

    def score_tails(self, heads, relations):
        return self.module(heads) @ self.module.weight.t()

    def score_heads(self, relations, tails):
        return self.module(tails) @ self.module.weight.t()
'''


@pytest.fixture
def toy(tmp_path) -> str:
    path = tmp_path / "toy_adapter.py"
    path.write_text(ADAPTER)
    return f"{path}:Toy"


@pytest.fixture
def ray_tmp(monkeypatch):
    """A short private folder for this test's Ray session; any Ray process left in it is killed after."""
    from mmbench.sweep import short_tmp_dir

    d = short_tmp_dir()
    monkeypatch.setenv("MMBENCH_RAY_TMP", d)
    yield d
    assert _kill_ray_processes(d) == 0, "Ray processes were left behind"


def _ray_pids(tmp: str) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return [int(line.split(None, 1)[0]) for line in out.splitlines() if tmp in line and "ps -eo" not in line]


def _kill_ray_processes(tmp: str) -> int:
    pids = _ray_pids(tmp)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def _records(results: Path) -> dict[str, dict]:
    return {str(p): r for p, r in ResultStore(results).iter_records()}


def _settled_records(results: Path, quiet_seconds: float, timeout: float) -> dict[str, dict]:
    """The records once no new one has appeared for ``quiet_seconds`` (at most ``timeout``)."""
    deadline = time.time() + timeout
    before = _records(results)
    while time.time() < deadline:
        time.sleep(quiet_seconds)
        now = _records(results)
        if now.keys() == before.keys():
            return now
        before = now
    return before


# ------------------------------------------------------------------ sweep files and planning
def test_sweep_file(tmp_path):
    f = tmp_path / "sweep.yaml"
    f.write_text("tasks: [nations, umls]\nseeds: 0-1\nmodels:\n  transe: {}\n"
                 "  mm-structure: {model: mm-concat, set: {use_text: false}, tasks: [nations]}\n")
    spec = load_sweep_file(f)
    assert len(spec.jobs) == 2 * 2 + 1 * 2
    assert SweepJob("mm-structure", "mm-concat", "nations", 1, (("use_text", False),)) in spec.jobs
    assert spec.log_samples is True
    f.write_text("tasks: [nations]\nmodels: [transe]\n")
    with pytest.raises(ConfigError, match="needs 'models'"):
        load_sweep_file(f)
    f.write_text("tasks: [nations]\nmodels: {transe: {sett: {}}}\n")
    with pytest.raises(ConfigError, match="models.transe must be a mapping with optional keys"):
        load_sweep_file(f)


def test_resume_skips_finished_and_reruns_only_the_missing(env, capsys):
    spec = spec_from_args(["distmult"], ["nations"], [0, 1], {"distmult": {"epochs": 1, "eval_every": 1}})
    r1 = run_sweep(spec, use_ray=False)
    assert (len(r1.done), r1.skipped, len(r1.failed)) == (2, 0, 0)
    recs = _records(env.results)
    assert len(recs) == 2
    assert (env.leaderboard / "nations.md").exists()
    mtimes = {p: os.stat(p).st_mtime_ns for p in recs}
    r2 = run_sweep(spec, use_ray=False)
    assert (len(r2.done), r2.skipped) == (0, 2)
    assert {p: os.stat(p).st_mtime_ns for p in recs} == mtimes
    gone = sorted(recs)[0]
    os.remove(gone)
    r3 = run_sweep(spec, use_ray=False)
    assert (len(r3.done), r3.skipped) == (1, 1)
    assert r3.done[0]["path"] == gone and os.path.exists(gone)
    assert os.stat(sorted(recs)[1]).st_mtime_ns == mtimes[sorted(recs)[1]]


def test_sweep_says_why_it_reruns_a_record_without_samples(env, capsys):
    from mmbench.cli import main

    assert main(["eval", "--model", "distmult", "--task", "nations", "--set", "epochs=1", "--set", "eval_every=1",
                 "--quiet"]) == 0
    capsys.readouterr()
    spec = spec_from_args(["distmult"], ["nations"], [0], {"distmult": {"epochs": 1, "eval_every": 1}})
    spec.log_samples = False  # the sweep does not need samples: the plain record is reused
    assert run_sweep(spec, use_ray=False).skipped == 1
    spec.log_samples = True
    report = run_sweep(spec, use_ray=False)
    out = capsys.readouterr().out
    assert (len(report.done), report.skipped) == (1, 0)
    assert "1 of those to run have a record without per-sample logs" in out and "superseded/" in out
    assert len(list(env.results.rglob("superseded/*.json"))) == 1


def test_failed_job_is_recorded_retried_and_does_not_stop_the_others(env, toy, tmp_path):
    over = {toy: {"crash_seed": 1, "marker_dir": str(tmp_path)}}
    spec = spec_from_args([toy], ["nations"], [0, 1, 2], over)
    report = run_sweep(spec, use_ray=False, retries=0)
    assert len(report.done) == 2 and len(report.failed) == 1
    assert "planned failure" in report.failed[0]["error"]
    failures = list(iter_failures(env.results))
    assert failures[0]["kind"] == "RuntimeError" and "about to fail on purpose" in failures[0]["log_tail"]
    # rerun: the two finished jobs are skipped, the failed one runs again (its marker now exists: succeeds)
    report = run_sweep(spec, use_ray=False, retries=0)
    assert (report.skipped, len(report.done), len(report.failed)) == (2, 1, 0)
    assert len(_records(env.results)) == 3


@pytest.mark.slow  # starts a Ray cluster
def test_gpu_request_on_a_gpu_less_cluster_is_refused(env, toy, ray_tmp):
    from mmbench.errors import MMBenchError

    spec = spec_from_args([toy], ["nations"], [0, 1], {})
    with pytest.raises(MMBenchError, match="the Ray cluster has 0 GPUs"):
        run_sweep(spec, gpus_per_job=1, max_parallel=2)


# ------------------------------------------------------------------ Ray: faults
@pytest.mark.slow  # starts a Ray cluster
def test_killed_worker_is_retried_on_ray(env, toy, tmp_path, ray_tmp):
    over = {toy: {"crash_seed": 1, "crash_how": "kill", "marker_dir": str(tmp_path)}}
    spec = spec_from_args([toy], ["nations"], [0, 1, 2], over)
    report = run_sweep(spec, max_parallel=2, retries=1, quiet=True)
    assert len(report.done) == 3 and not report.failed, report.failed
    assert report.ray["resources"]["CPU"] == 2
    failures = list(iter_failures(env.results))
    assert len(failures) == 1 and failures[0]["job"]["seed"] == 1 and failures[0]["attempt"] == 1
    assert "Worker" in failures[0]["kind"] or "Crash" in failures[0]["kind"] or "Died" in failures[0]["kind"]
    assert len(_records(env.results)) == 3


@pytest.mark.slow  # starts a Ray cluster
def test_killed_driver_loses_no_finished_record(env, toy, tmp_path, ray_tmp):
    n = 6  # two workers: at the kill at most 2 jobs are done and 2 running, so the rerun always has work
    cmd = [sys.executable, "-m", "mmbench.cli", "sweep", "--models", toy, "--tasks", "nations", "--seeds", f"0-{n - 1}",
           "--set", f"{toy}:sleep=2.0", "--set", f"{toy}:epochs=1", "--max-parallel", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ})
    deadline = time.time() + 120
    while time.time() < deadline and not _records(env.results):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # orphaned Ray workers (their process titles do not name ray_tmp) may still finish a running job after
    # the driver dies: count the records once they have stopped changing
    _kill_ray_processes(ray_tmp)
    finished = _settled_records(env.results, quiet_seconds=4.0, timeout=60.0)
    assert 1 <= len(finished) <= 4, proc.stdout.read().decode()
    for rec in finished.values():  # complete, valid records
        assert rec.test("both.realistic.mrr") > 0
    mtimes = {p: os.stat(p).st_mtime_ns for p in finished}
    spec = spec_from_args([toy], ["nations"], list(range(n)), {toy: {"sleep": 2.0, "epochs": 1}})
    report = run_sweep(spec, use_ray=False, quiet=True)
    assert report.skipped == len(finished) and len(report.done) == n - len(finished)
    assert {p: os.stat(p).st_mtime_ns for p in finished} == mtimes
    assert len(_records(env.results)) == n
    assert json.loads(Path(next(iter(finished))).read_text())["seed"] in range(n)
