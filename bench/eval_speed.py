"""Evaluation speed: mmbench's RankingEvaluator vs PyKEEN's RankBasedEvaluator on a DB15K-sized problem.

Both evaluate the same 256-dim DistMult scorer (scores = (e_h * w_r) @ E.T as one matmul; PyKEEN's own
DistMult would materialise a (batch, entities, dim) tensor, so its model's predict() is replaced by the
same matmul) with filtered head+tail ranking over 12,842 entities and 9,902 test triples, filter =
train + valid + test (DB15K's sizes). Each evaluator runs in its own subprocess so peak memory is its own.
Prints both times, the ratio and peak RSS, and checks that the two give the same metrics.

    .venv/bin/python bench/eval_speed.py [--batch-size 512] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

NUM_ENTITIES, NUM_RELATIONS, DIM = 12842, 279, 256
SIZES = {"train": 79222, "valid": 9904, "test": 9902}


def problem():
    import torch

    g = torch.Generator().manual_seed(0)  # every draw below uses it: both subprocesses build the same problem
    n = sum(SIZES.values())
    # skewed entity popularity, like real KGs: many queries share (h, r) and have several answers.
    # Pareto(scale 1, alpha 1.2) by inverse CDF; draw 20% extra triples so n distinct ones remain
    pop = torch.rand(NUM_ENTITIES, generator=g).clamp_min(1e-12) ** (-1 / 1.2)
    m = int(n * 1.2)
    heads = torch.multinomial(pop, m, replacement=True, generator=g)
    tails = torch.multinomial(pop, m, replacement=True, generator=g)
    rels = torch.randint(0, NUM_RELATIONS, (m,), generator=g)
    triples = torch.unique(torch.stack([heads, rels, tails], 1), dim=0)
    if len(triples) < n:
        raise RuntimeError(f"only {len(triples)} distinct triples for {n}: raise the oversampling factor")
    triples = triples[torch.randperm(len(triples), generator=g)]
    train = triples[: SIZES["train"]]
    valid = triples[SIZES["train"]: SIZES["train"] + SIZES["valid"]]
    test = triples[SIZES["train"] + SIZES["valid"]: n][: SIZES["test"]]
    ent = torch.randn(NUM_ENTITIES, DIM, generator=g) / DIM ** 0.25
    rel = torch.randn(NUM_RELATIONS, DIM, generator=g) / DIM ** 0.25
    return train, valid, test, ent, rel


def run_mmbench(batch_size: int) -> dict:
    import torch

    from mmbench.metrics.ranking import RankingEvaluator

    train, valid, test, ent, rel = problem()
    t0 = time.perf_counter()
    ev = RankingEvaluator(NUM_ENTITIES, NUM_RELATIONS, torch.cat([train, valid, test]), batch_size=batch_size)
    fns = {"tail": lambda h, r, b: (ent[h] * rel[r]) @ ent.t(), "head": lambda t, r, b: (ent[t] * rel[r]) @ ent.t()}
    with torch.inference_mode():
        metrics = ev.evaluate(test, fns).metrics
    return {"seconds": time.perf_counter() - t0, "metrics": metrics}


def run_pykeen(batch_size: int) -> dict:
    from pykeen.evaluation import RankBasedEvaluator
    from pykeen.models import DistMult
    from pykeen.triples import CoreTriplesFactory

    train, valid, test, ent, rel = problem()
    factory = CoreTriplesFactory.create(train, num_entities=NUM_ENTITIES, num_relations=NUM_RELATIONS)
    model = DistMult(triples_factory=factory, embedding_dim=DIM, random_seed=0)

    def predict(hrt_batch, target, slice_size=None, mode=None, **kw):
        anchor = hrt_batch[:, 0] if target == "tail" else hrt_batch[:, 2]
        return (ent[anchor] * rel[hrt_batch[:, 1]]) @ ent.t()

    model.predict = predict  # the same scorer as mmbench's, so only the evaluators differ
    t0 = time.perf_counter()
    result = RankBasedEvaluator(filtered=True).evaluate(model, test, additional_filter_triples=[train, valid],
                                                        batch_size=batch_size, use_tqdm=False)
    seconds = time.perf_counter() - t0
    names = {"mrr": "inverse_harmonic_mean_rank", "mr": "arithmetic_mean_rank", "hits@1": "hits_at_1",
             "hits@3": "hits_at_3", "hits@10": "hits_at_10"}
    metrics = {f"{side}.{rt}.{k}": result.get_metric(f"{side}.{rt}.{v}") for side in ("head", "tail", "both")
               for rt in ("optimistic", "pessimistic", "realistic") for k, v in names.items()}
    return {"seconds": seconds, "metrics": metrics}


def child(which: str, batch_size: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    out = (run_mmbench if which == "mmbench" else run_pykeen)(batch_size)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", choices=["mmbench", "pykeen"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.batch_size, args.threads)
        return
    res = {}
    for which in ("mmbench", "pykeen"):
        proc = subprocess.run([sys.executable, __file__, "--child", which, "--batch-size", str(args.batch_size),
                               "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        res[which] = json.loads(proc.stdout.strip().splitlines()[-1])
    worst, worst_key = max((abs(res["mmbench"]["metrics"][k] - v), k) for k, v in res["pykeen"]["metrics"].items())
    m, p = res["mmbench"], res["pykeen"]
    print(f"DB15K-sized filtered evaluation: {NUM_ENTITIES:,} entities, {SIZES['test']:,} test triples x 2 sides, "
          f"DistMult dim {DIM}, batch {args.batch_size}, {args.threads} threads")
    print(f"  mmbench RankingEvaluator   {m['seconds']:7.2f} s   peak RSS {m['peak_rss_mb']:7.0f} MB")
    print(f"  PyKEEN RankBasedEvaluator  {p['seconds']:7.2f} s   peak RSS {p['peak_rss_mb']:7.0f} MB")
    print(f"  speed ratio PyKEEN/mmbench {p['seconds'] / m['seconds']:.2f}x; "
          f"max |metric difference| {worst:.2e} ({worst_key}) over {len(p['metrics'])} metrics")


if __name__ == "__main__":
    main()
