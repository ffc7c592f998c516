"""The ``mmbench`` command. Argument parsing only: each command calls one library function."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from mmbench import paths
from mmbench.config import parse_seeds
from mmbench.errors import ConfigError, MMBenchError, failure_summary


def cmd_list(args: argparse.Namespace) -> int:
    if args.what == "tasks":
        from mmbench.data import data_status
        from mmbench.tasks import scan_cards

        cards, broken = scan_cards()
        width = max((len(n) for n in [*cards, *broken]), default=4)
        for name, card in cards.items():
            present, detail = data_status(card)
            mark = "ready  " if present else "missing"
            print(f"{name:<{width}}  {card.family:<14} {mark}  {card.description.splitlines()[0][:90]}")
            if not present or args.verbose:
                print(f"{'':<{width}}  {'':<14}          data: {detail}")
        for stem, error in broken.items():
            print(f"{stem:<{width}}  {'?':<14} broken   {str(error).splitlines()[0][:200]}")
    else:
        from mmbench.registry import all_models, model_families

        models = all_models()
        width = max((len(n) for n in models), default=4)
        for name, cls in models.items():
            families = ", ".join(model_families(name)) or cls.family
            print(f"{name:<{width}}  {families:<14} {cls.description}")
    return 0


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, e.g. a container's or a job's quota)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def cmd_eval(args: argparse.Namespace) -> int:
    from mmbench.config import parse_overrides
    from mmbench.isolation import run_in_fresh_process
    from mmbench.report import print_summary
    from mmbench.runner import EvalRequest, run_eval

    overrides = parse_overrides(args.set or [])
    seeds = parse_seeds(args.seed)
    for seed in seeds:
        req = EvalRequest(model=args.model, task=args.task, seed=seed, overrides=overrides,
                          checkpoint=Path(args.checkpoint) if args.checkpoint else None,
                          save_checkpoint=Path(args.save_checkpoint) if args.save_checkpoint else None,
                          force=args.force, log_samples=args.log_samples, quiet=args.quiet,
                          verify_data=not args.unverified_data, shards=args.shards, device=args.device,
                          results_dir=Path(args.results_dir) if args.results_dir else None,
                          threads=args.threads if args.threads is not None else available_cores())
        # several seeds: each in a fresh process, so no seed's adapter can reach what an earlier seed scored
        outcome = run_in_fresh_process(run_eval, req) if len(seeds) > 1 else run_eval(req)
        print_summary(outcome.record, outcome.path, outcome.reused)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from mmbench.config import parse_overrides
    from mmbench.sweep import load_sweep_file, run_sweep, spec_from_args

    if args.file:
        if args.models or args.tasks:
            raise ConfigError("give either a sweep file or --models/--tasks, not both")
        spec = load_sweep_file(Path(args.file))
    else:
        if not (args.models and args.tasks):
            raise ConfigError("mmbench sweep needs --models and --tasks (comma-separated), or a sweep file")
        overrides: dict[str, dict] = {}
        for item in args.set or []:
            target, eq, value = item.partition("=")
            model, sep, key = target.rpartition(":")  # the model may itself hold ':' (file.py:Class)
            if not (eq and sep and model and key):
                raise ConfigError(f"--set {item!r}: in a sweep, write MODEL:key=value (e.g. mygo:epochs=50)")
            overrides.setdefault(model, {}).update(parse_overrides([f"{key}={value}"]))
        seeds = parse_seeds(args.seeds, "--seeds")
        spec = spec_from_args(args.models.split(","), args.tasks.split(","), seeds, overrides)
    if args.no_log_samples:
        spec.log_samples = False
    report = run_sweep(spec, results_dir=Path(args.results_dir) if args.results_dir else None,
                       address=args.address, gpus_per_job=args.gpus_per_job, cpus_per_job=args.cpus_per_job,
                       max_parallel=args.max_parallel, retries=args.retries, use_ray=not args.no_ray,
                       verify_data=not args.unverified_data, quiet=args.quiet, shards=args.shards,
                       device=args.device)
    return 1 if report.failed else 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from mmbench.leaderboard import write_leaderboard
    from mmbench.results import ResultStore

    store = ResultStore(Path(args.results_dir) if args.results_dir else paths.results_root())
    out = Path(args.out) if args.out else paths.leaderboard_root()
    written = write_leaderboard(store, out, include_unverified=args.include_unverified)
    if not written:
        print(f"no result records under {store.root}; run `mmbench eval` first")
        return 1
    for p in written:
        print(f"wrote {p}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from mmbench.config import parse_overrides
    from mmbench.validate import validate_adapter

    checks = validate_adapter(args.model, args.task, parse_overrides(args.set or []),
                              verify_data=not args.unverified_data)
    for c in checks:
        print(f"{'PASS' if c.ok else 'FAIL'}  {c.name}: {c.detail}")
    ok = all(c.ok for c in checks) and len(checks) == 6
    print("adapter OK" if ok else "adapter has problems (see FAIL above)")
    return 0 if ok else 1


def cmd_data(args: argparse.Namespace) -> int:
    from mmbench.data import prepare_task_data
    from mmbench.tasks import get_card

    manifest = prepare_task_data(get_card(args.task), Path(args.src), link=args.link,
                                 verify=not args.unverified_data)
    print(f"prepared {args.task}: {manifest['stats']}")
    for note in manifest["notes"]:
        print(f"note: {note}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmbench", description="Benchmark harness for multimodal graph learning.")
    sub = p.add_subparsers(dest="command", required=True)

    lp = sub.add_parser("list", help="list registered tasks or models")
    lp.add_argument("what", choices=["tasks", "models"])
    lp.add_argument("-v", "--verbose", action="store_true", help="show where each task's data is")
    lp.set_defaults(fn=cmd_list)

    ep = sub.add_parser("eval", help="train with validation selection, score test once, write a record")
    ep.add_argument("--model", required=True, help="registered name or path/to/file.py:ClassName")
    ep.add_argument("--task", required=True, help="registered task name or path/to/card.yaml")
    ep.add_argument("--seed", default="0", help="seed, list (0,1,2) or range (0-2); default 0")
    ep.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a model config value")
    ep.add_argument("--checkpoint", help="load this state dict instead of training")
    ep.add_argument("--save-checkpoint", help="save the selected model state here")
    ep.add_argument("--force", action="store_true", help="recompute even if the record exists")
    ep.add_argument("--log-samples", action="store_true", help="save per-query ranks beside the record")
    ep.add_argument("--quiet", action="store_true", help="no progress bars")
    ep.add_argument("--unverified-data", action="store_true",
                    help="run on data whose counts differ from the published statistics (marked in the record)")
    ep.add_argument("--results-dir", help="where records go (default $MMBENCH_RESULTS or ./results)")
    ep.add_argument("--shards", type=int, default=1,
                    help="generation: decode the test split in N shards (Ray workers under `mmbench sweep`)")
    ep.add_argument("--device", default="auto",
                    help="auto (default: a visible GPU, else the CPU), cpu, cuda or cuda:N")
    ep.add_argument("--threads", type=int, default=None,
                    help="CPU threads for torch (default: the cores available to this process); in the record")
    ep.set_defaults(fn=cmd_eval)

    sp = sub.add_parser("sweep", help="run many (model, task, seed) jobs on Ray, then regenerate the leaderboard",
                        description="Run every (model, task, seed) job, skipping those with a record. "
                                    "A sweep file (YAML) can name the jobs instead of --models/--tasks.")
    sp.add_argument("file", nargs="?", help="sweep file (YAML), e.g. leaderboard/sweep.yaml")
    sp.add_argument("--models", help="comma-separated model names")
    sp.add_argument("--tasks", help="comma-separated task names")
    sp.add_argument("--seeds", default="0", help="seeds: 0-4, 0,1,2 or 3 (default 0)")
    sp.add_argument("--set", action="append", metavar="MODEL:KEY=VALUE", help="per-model config override")
    sp.add_argument("--address", help="Ray cluster: ray://host:10001, auto, or leave out for a local Ray")
    sp.add_argument("--gpus-per-job", type=float, default=None,
                    help="GPUs per job (default: 1 when the cluster has GPUs, else 0)")
    sp.add_argument("--cpus-per-job", type=float, default=1)
    sp.add_argument("--max-parallel", type=int, help="jobs at once (default: as resources allow; 1 = no Ray)")
    sp.add_argument("--retries", type=int, default=1, help="retries per failed job (default 1)")
    sp.add_argument("--no-ray", action="store_true", help="run the jobs one after another in this process")
    sp.add_argument("--no-log-samples", action="store_true", help="do not keep per-sample logs")
    sp.add_argument("--shards", type=int, default=1,
                    help="generation jobs: split test decoding over N Ray workers (one GPU each with GPUs)")
    sp.add_argument("--device", default="auto",
                    help="auto (default: the GPU Ray assigned to the job, else the CPU), cpu or cuda")
    sp.add_argument("--unverified-data", action="store_true")
    sp.add_argument("--results-dir")
    sp.add_argument("--quiet", action="store_true")
    sp.set_defaults(fn=cmd_sweep)

    bp = sub.add_parser("leaderboard", help="regenerate the markdown tables from all records")
    bp.add_argument("--results-dir", help="default $MMBENCH_RESULTS or ./results")
    bp.add_argument("--out", help="default $MMBENCH_LEADERBOARD or ./leaderboard")
    bp.add_argument("--include-unverified", action="store_true")
    bp.set_defaults(fn=cmd_leaderboard)

    vp = sub.add_parser("validate-adapter", help="smoke-check an adapter on a task")
    vp.add_argument("model")
    vp.add_argument("--task", required=True)
    vp.add_argument("--set", action="append", metavar="KEY=VALUE")
    vp.add_argument("--unverified-data", action="store_true")
    vp.set_defaults(fn=cmd_validate)

    dp = sub.add_parser("data", help="dataset utilities")
    dsub = dp.add_subparsers(dest="data_command", required=True)
    pp = dsub.add_parser("prepare", help="copy a downloaded release into $MMBENCH_DATA and verify it")
    pp.add_argument("task")
    pp.add_argument("--from", dest="src", required=True, help="folder holding the downloaded release")
    pp.add_argument("--link", action="store_true", help="symlink instead of copying")
    pp.add_argument("--unverified-data", action="store_true",
                    help="prepare data whose counts differ from the card's (the manifest and every result on it "
                         "are marked unverified)")
    pp.set_defaults(fn=cmd_data)
    return p


def main(argv: list[str] | None = None) -> int:
    paths.use_cache_for_pystow()
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except MMBenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished records are kept", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001  (the full traceback, then one line naming the model-code frame)
        traceback.print_exc()
        print(f"error: {failure_summary(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
