"""Sweep speed: 8 short CPU jobs run one after another in-process vs on a local Ray with 2 workers,
in one run. Prints both wall times, the speedup and Ray's start-up overhead.

Jobs: distmult on umls, seeds 0-7, 250 epochs each (about the same work per job; at 30 epochs a job lasts
1.6 s and Ray's start-up hides any gain). The sequential run uses torch's default threads (both
cores); each Ray worker gets one core and one thread.

    .venv/bin/python bench/sweep_speed.py [--jobs 8] [--epochs 250]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=250)
    ap.add_argument("--task", default="umls")
    ap.add_argument("--model", default="distmult")
    args = ap.parse_args()

    from mmbench.sweep import run_sweep, short_tmp_dir, spec_from_args

    spec = spec_from_args([args.model], [args.task], list(range(args.jobs)),
                          {args.model: {"epochs": args.epochs, "eval_every": 10, "patience": 0}})
    spec.log_samples = False
    work = Path(tempfile.mkdtemp(prefix="mmbench-sweep-bench-"))
    os.environ["MMBENCH_LEADERBOARD"] = str(work / "leaderboard")
    os.environ["MMBENCH_RAY_TMP"] = short_tmp_dir()
    try:
        t0 = time.perf_counter()
        seq = run_sweep(spec, results_dir=work / "sequential", use_ray=False, quiet=True, leaderboard=False)
        t_seq = time.perf_counter() - t0

        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 _temp_dir=os.environ["MMBENCH_RAY_TMP"])
        ray.get(ray.remote(lambda: None).remote())
        t_start = time.perf_counter() - t0
        ray.shutdown()

        t0 = time.perf_counter()
        par = run_sweep(spec, results_dir=work / "ray", max_parallel=2, quiet=True, leaderboard=False)
        t_par = time.perf_counter() - t0
        assert len(seq.done) == len(par.done) == args.jobs and not seq.failed and not par.failed
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.jobs} jobs ({args.model} on {args.task}, {args.epochs} epochs each) on {os.cpu_count()} cores")
    print(f"  sequential, in-process          {t_seq:7.1f} s")
    print(f"  local Ray, 2 workers            {t_par:7.1f} s   (includes Ray start + shutdown)")
    print(f"  speedup                         {t_seq / t_par:7.2f}x")
    print(f"  Ray start-up + first task       {t_start:7.1f} s")


if __name__ == "__main__":
    main()
