"""``mmbench sweep``: every (model, task, seed) job, fanned out by Ray, into result records and the
leaderboard. Resumable (finished records are skipped), fault tolerant (a failed job is recorded with
its error and log tail, retried, and never stops the others), and the same command runs on one
machine or a cluster (``--address``).

Flow: the driver loads each task's data once, plans every job (run key) and skips those whose record
exists; the remaining jobs run in-process (one worker or ``--no-ray``) or as Ray tasks that receive the
task data through the object store. Each job writes its own record atomically as soon as it finishes,
so killing the driver loses nothing that finished.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmbench import paths
from mmbench.config import parse_seeds
from mmbench.errors import ConfigError, MMBenchError
from mmbench.io import atomic_write_json, utc_now
from mmbench.isolation import run_in_fresh_process

LOG_TAIL_LINES = 40


# --------------------------------------------------------------------------- what to run
@dataclass(frozen=True)
class SweepJob:
    """One job: ``label`` names the model entry of the sweep (a model may appear with several configs)."""

    label: str
    model: str
    task: str
    seed: int
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.label} / {self.task} / seed {self.seed}"


@dataclass
class SweepSpec:
    jobs: list[SweepJob]
    log_samples: bool = True
    source: str | None = None


def _seeds(value: Any, where: str) -> list[int]:
    text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
    return parse_seeds(text, where)


def spec_from_args(models: list[str], tasks: list[str], seeds: list[int],
                   overrides: dict[str, dict[str, Any]] | None = None) -> SweepSpec:
    overrides = overrides or {}
    jobs = [SweepJob(m, m, t, s, tuple(sorted(overrides.get(m, {}).items())))
            for m, t, s in itertools.product(models, tasks, seeds)]
    return SweepSpec(jobs)


def load_sweep_file(path: Path) -> SweepSpec:
    """A sweep file (YAML)::

        tasks: [synth-mmkg, nations]
        seeds: 0-2                  # or [0, 1, 2]
        log_samples: true
        models:
          transe: {}
          mm-concat: {set: {lr: 0.01}}
          mm-concat-structure: {model: mm-concat, set: {use_text: false, use_image: false}}
          mygo: {tasks: [synth-mmkg]}    # per-model task list (default: all tasks)
    """
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"sweep file {path} does not exist") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict) or not raw.get("tasks"):
        raise ConfigError(f"{path}: a sweep file needs 'models' (a mapping) and 'tasks' (a list); see "
                          f"`mmbench sweep --help`")
    unknown = set(raw) - {"name", "description", "tasks", "seeds", "models", "log_samples"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}")
    seeds = _seeds(raw.get("seeds", 0), f"{path}: seeds")
    jobs = []
    for label, entry in raw["models"].items():
        entry = entry or {}
        if not isinstance(entry, dict) or set(entry) - {"model", "set", "tasks", "seeds"}:
            raise ConfigError(f"{path}: models.{label} must be a mapping with optional keys model, set, tasks, seeds")
        over = entry.get("set") or {}
        if not isinstance(over, dict):
            raise ConfigError(f"{path}: models.{label}.set must be a mapping of config keys to values")
        for task in entry.get("tasks", raw["tasks"]):
            for seed in _seeds(entry.get("seeds", seeds), f"{path}: models.{label}.seeds"):
                jobs.append(SweepJob(str(label), entry.get("model", str(label)), task, seed,
                                     tuple(sorted(over.items()))))
    return SweepSpec(jobs, log_samples=bool(raw.get("log_samples", True)), source=str(path))


# --------------------------------------------------------------------------- running one job
def _log_path(results_dir: Path, job: SweepJob) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{job.task}__{job.label}__seed{job.seed}")
    return results_dir / "_sweep" / "logs" / f"{safe}.log"


def run_one(job: SweepJob, dataset: Any, results_dir: str, log_samples: bool, verify_data: bool,
            threads: int | None = None, shards: int = 1, device: str = "auto") -> dict[str, Any]:
    """Run one job, its output appended to its log file; returns a small summary (the record is on disk)."""
    import torch

    from mmbench.runner import EvalRequest, run_eval

    if threads:
        torch.set_num_threads(threads)
    log = _log_path(Path(results_dir), job)
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "a", encoding="utf-8") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        print(f"== {utc_now()} {job.name} (pid {os.getpid()})", flush=True)
        req = EvalRequest(model=job.model, task=job.task, seed=job.seed, overrides=dict(job.overrides),
                          log_samples=log_samples, quiet=True, verify_data=verify_data,
                          results_dir=Path(results_dir), shards=shards, device=device)
        outcome = run_eval(req, dataset=dataset)
        print(f"== finished: {outcome.path}", flush=True)
    rec = outcome.record
    return {"path": str(outcome.path), "reused": outcome.reused, "seconds": time.perf_counter() - t0,
            "main_metric": rec.main_metric, "value": rec.test(),
            "device": (rec.device or {}).get("device")}


def log_tail(results_dir: Path, job: SweepJob, lines: int = LOG_TAIL_LINES) -> str:
    path = _log_path(results_dir, job)
    try:
        return "".join(path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return ""


def record_failure(results_dir: Path, job: SweepJob, attempt: int, error: str, kind: str) -> Path:
    """Failures are kept beside the results (never in the leaderboard): _sweep/failures/<job>.attemptN.json."""
    path = _log_path(results_dir, job).parent.parent / "failures" / \
        f"{_log_path(results_dir, job).stem}.attempt{attempt}.json"
    atomic_write_json(path, {"job": asdict(job), "attempt": attempt, "kind": kind, "error": error,
                             "log_tail": log_tail(results_dir, job), "at": utc_now()})
    return path


# --------------------------------------------------------------------------- the sweep
@dataclass
class SweepReport:
    total: int = 0
    skipped: int = 0
    done: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    ray: dict[str, Any] = field(default_factory=dict)


class Progress:
    """One line per event with done / running / failed counts and an ETA."""

    def __init__(self, total: int, parallel: int, quiet: bool):
        self.total, self.parallel, self.quiet = total, max(1, parallel), quiet
        self.done = self.failed = self.running = 0
        self.durations: list[float] = []
        self.t0 = time.perf_counter()

    def eta(self) -> str:
        left = self.total - self.done - self.failed
        if not self.durations or left <= 0:
            return "?" if left > 0 else "0s"
        s = sum(self.durations) / len(self.durations) * left / self.parallel
        return f"{int(s // 60)}m{int(s % 60):02d}s"

    def line(self, text: str) -> None:
        if not self.quiet:
            print(f"[{self.done}/{self.total} done · {self.running} running · {self.failed} failed · "
                  f"ETA {self.eta()}] {text}", flush=True)


def plan_jobs(spec: SweepSpec, results_dir: Path, verify_data: bool, quiet: bool
              ) -> tuple[list[SweepJob], int, dict[str, Any]]:
    """Load every task once, plan every job; returns (jobs still to run, number skipped, task -> data)."""
    from mmbench.data import load_task_data
    from mmbench.runner import EvalRequest, plan
    from mmbench.tasks import get_card

    data: dict[str, Any] = {}
    todo, skipped, without_samples = [], 0, []
    for task in dict.fromkeys(j.task for j in spec.jobs):
        data[task] = load_task_data(get_card(task), verify=verify_data)
    for job in spec.jobs:
        req = EvalRequest(model=job.model, task=job.task, seed=job.seed, overrides=dict(job.overrides),
                          log_samples=spec.log_samples, verify_data=verify_data, results_dir=results_dir)
        p = plan(req, dataset=data[job.task])
        if p.existing() is not None:
            skipped += 1
        else:
            todo.append(job)
            if p.record_path.exists():
                without_samples.append(job.name)
    if not quiet:
        print(f"sweep: {len(spec.jobs)} jobs, {skipped} already have records, {len(todo)} to run", flush=True)
        if without_samples:
            print(f"sweep: {len(without_samples)} of those to run have a record without per-sample logs (made by "
                  f"`mmbench eval` without --log-samples), which the leaderboard's significance tests need: they "
                  f"are re-run and the old records move to superseded/ ({', '.join(without_samples[:5])}"
                  f"{', ...' if len(without_samples) > 5 else ''}); `log_samples: false` in the sweep file keeps "
                  f"them", flush=True)
    return todo, skipped, data


def run_sweep(spec: SweepSpec, results_dir: Path | None = None, address: str | None = None,
              gpus_per_job: float | None = None, cpus_per_job: float = 1, max_parallel: int | None = None,
              retries: int = 1, use_ray: bool = True, verify_data: bool = True, quiet: bool = False,
              leaderboard: bool = True, shards: int = 1, device: str = "auto") -> SweepReport:
    from mmbench.devices import check_device_spec

    device = check_device_spec(device)
    if device.startswith("cuda:"):
        raise ConfigError(f"--device {device}: in a sweep Ray assigns each job its GPU; use --device auto or cuda")
    if device == "cpu" and gpus_per_job:
        raise ConfigError(f"--device cpu with --gpus-per-job {gpus_per_job:g} would reserve GPUs no job uses")
    if device == "cpu":
        gpus_per_job = 0.0
    if device == "cuda" and gpus_per_job is not None and gpus_per_job < 1:
        raise ConfigError("--device cuda needs --gpus-per-job 1 (or more): each job must get a GPU from Ray")
    results_dir = Path(results_dir or paths.results_root())
    t0 = time.perf_counter()
    todo, skipped, data = plan_jobs(spec, results_dir, verify_data, quiet)
    report = SweepReport(total=len(spec.jobs), skipped=skipped)
    if todo:
        in_process = not use_ray or max_parallel == 1
        runner = _run_in_process if in_process else _run_on_ray
        runner(todo, data, spec, results_dir, report, retries, verify_data, quiet, address=address,
               gpus_per_job=gpus_per_job, cpus_per_job=cpus_per_job, max_parallel=max_parallel, shards=shards,
               device=device)
    report.seconds = time.perf_counter() - t0
    if leaderboard:
        from mmbench.leaderboard import write_leaderboard
        from mmbench.results import ResultStore

        write_leaderboard(ResultStore(results_dir), paths.leaderboard_root())
    if not quiet:
        print(f"sweep finished in {report.seconds:.1f} s: {len(report.done)} ran, {report.skipped} skipped, "
              f"{len(report.failed)} failed", flush=True)
        for f in report.failed:
            print(f"  FAILED {f['job']}: {f['error'].splitlines()[-1] if f['error'] else f['kind']} "
                  f"(see {f['failure_file']})", flush=True)
    return report


def _summary(job: SweepJob, out: dict[str, Any]) -> str:
    value = out.get("value")
    shown = f"{out['main_metric'].rsplit('.', 1)[-1]} {value:.4f}" if isinstance(value, float) else "no metric"
    where = f" on {out['device']}" if out.get("device") else ""
    return f"{job.name}: {shown} ({out['seconds']:.1f} s{where})"


def _run_in_process(todo: list[SweepJob], data: dict[str, Any], spec: SweepSpec, results_dir: Path,
                    report: SweepReport, retries: int, verify_data: bool, quiet: bool, shards: int = 1,
                    device: str = "auto", **_: Any) -> None:
    prog = Progress(len(todo), 1, quiet)
    for job in todo:
        for attempt in range(1, retries + 2):
            prog.running = 1
            try:
                args = (job, data[job.task], str(results_dir), spec.log_samples, verify_data, None, shards, device)
                # several jobs: each in a fresh process, so none can reach what an earlier one scored
                out = run_in_fresh_process(run_one, *args, show_traceback=False) if len(todo) > 1 else run_one(*args)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001  (a failing job must not stop the sweep)
                err = getattr(e, "child_traceback", None) or "".join(traceback.format_exception(e))
                kind = getattr(e, "kind", type(e).__name__)
                path = record_failure(results_dir, job, attempt, err, kind)
                if attempt > retries:
                    prog.failed += 1
                    report.failed.append({"job": job.name, "error": err, "kind": kind,
                                          "failure_file": str(path)})
                    prog.line(f"{job.name}: FAILED after {attempt} attempts ({kind})")
                else:
                    prog.line(f"{job.name}: attempt {attempt} failed ({kind}); retrying")
                continue
            finally:
                prog.running = 0
            prog.done += 1
            prog.durations.append(out["seconds"])
            report.done.append({"job": job.name, **out})
            prog.line(_summary(job, out))
            break


def _ray_init(address: str | None, max_parallel: int | None) -> tuple[Any, dict[str, Any]]:
    import ray

    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
    if address:
        kwargs["address"] = address
    else:
        kwargs["num_cpus"] = max_parallel or os.cpu_count() or 1
        kwargs["num_gpus"] = None
        kwargs["object_store_memory"] = 1 << 30
        tmp = os.environ.get("MMBENCH_RAY_TMP")
        if tmp:
            kwargs["_temp_dir"] = tmp
    with contextlib.redirect_stderr(io.StringIO()):
        ctx = ray.init(**kwargs)
    return ray, {"address": getattr(ctx, "address_info", {}).get("address") if ctx else None,
                 "resources": {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}}


def _run_on_ray(todo: list[SweepJob], data: dict[str, Any], spec: SweepSpec, results_dir: Path,
                report: SweepReport, retries: int, verify_data: bool, quiet: bool, *, address: str | None,
                gpus_per_job: float | None, cpus_per_job: float, max_parallel: int | None, shards: int = 1,
                device: str = "auto") -> None:
    ray, info = _ray_init(address, max_parallel)
    report.ray = info
    try:
        gpus = float(info["resources"].get("GPU", 0))
        cpus = float(info["resources"].get("CPU", 1))
        if gpus_per_job is None:
            gpus_per_job = 1.0 if gpus > 0 else 0.0
        if gpus_per_job > 0 and gpus < gpus_per_job:
            raise MMBenchError(f"--gpus-per-job {gpus_per_job:g} but the Ray cluster has {gpus:g} GPUs: the jobs "
                               f"would wait forever. Use --gpus-per-job 0 on CPU-only clusters.")
        if device == "cuda" and gpus_per_job <= 0:
            raise MMBenchError("--device cuda but the jobs get no GPU (the cluster has none, or --gpus-per-job 0)")
        parallel = max_parallel or max(1, int(cpus // cpus_per_job))
        if gpus_per_job > 0:
            # a sharded job also needs one GPU per shard for its test decoding: leave room for them
            per_job = gpus_per_job + (shards if shards > 1 else 0)
            if gpus < per_job:
                raise MMBenchError(f"each job needs {per_job:g} GPUs ({gpus_per_job:g} + {shards} shards) but the "
                                   f"cluster has {gpus:g}; lower --shards")
            parallel = min(parallel, max(1, int(gpus // per_job)))
        threads = max(1, int(cpus_per_job))
        # max_calls=1: a worker process runs one job, so no job can reach what an earlier one scored
        remote = ray.remote(max_calls=1)(run_one).options(num_cpus=cpus_per_job, num_gpus=gpus_per_job,
                                                          max_retries=0)
        refs = {task: ray.put(d) for task, d in data.items()}  # shared once through the object store
        if not quiet:
            print(f"ray: {info['resources']} · {parallel} parallel jobs · {cpus_per_job:g} CPU"
                  f"{f' + {gpus_per_job:g} GPU' if gpus_per_job else ''} each", flush=True)
        prog = Progress(len(todo), parallel, quiet)
        queue = [(job, 1) for job in todo]
        running: dict[Any, tuple[SweepJob, int]] = {}
        while queue or running:
            while queue and len(running) < parallel:
                job, attempt = queue.pop(0)
                ref = remote.remote(job, refs[job.task], str(results_dir), spec.log_samples, verify_data, threads,
                                    shards, device)
                running[ref] = (job, attempt)
            prog.running = len(running)
            ready, _ = ray.wait(list(running), num_returns=1)
            job, attempt = running.pop(ready[0])
            prog.running = len(running)
            try:
                out = ray.get(ready[0])
            except ray.exceptions.RayError as e:
                kind = type(e).__name__
                cause = getattr(e, "cause", None)
                err = "".join(traceback.format_exception(cause)) if isinstance(cause, BaseException) else str(e)
                path = record_failure(results_dir, job, attempt, err, kind)
                if attempt <= retries:
                    queue.append((job, attempt + 1))
                    prog.line(f"{job.name}: attempt {attempt} failed ({kind}); retrying")
                else:
                    prog.failed += 1
                    report.failed.append({"job": job.name, "error": err, "kind": kind, "failure_file": str(path)})
                    prog.line(f"{job.name}: FAILED after {attempt} attempts ({kind})")
                continue
            prog.done += 1
            prog.durations.append(out["seconds"])
            report.done.append({"job": job.name, **out})
            prog.line(_summary(job, out))
    finally:
        ray.shutdown()


def iter_failures(results_dir: Path) -> Iterator[dict[str, Any]]:
    for p in sorted((Path(results_dir) / "_sweep" / "failures").glob("*.json")):
        with contextlib.suppress(OSError, json.JSONDecodeError):
            yield json.loads(p.read_text(encoding="utf-8"))


def short_tmp_dir() -> str:
    """A short temp folder for Ray's sockets (their paths must stay under ~107 characters)."""
    return tempfile.mkdtemp(prefix="mmray", dir="/tmp" if sys.platform != "win32" else None)
