"""MyGO on a DB15K-sized synthetic problem: seconds per training epoch, peak memory, and evaluation
speed of mmbench's batched ranking against a loop that mirrors the public code's evaluation.

Problem: 12,842 entities, 279 relations, 79,222 train / 9,902 test random triples, 8 visual tokens
(random ids into an [8193, 32] codebook) and 4 text tokens (BERT ids, frozen MiniLM embeddings) per
entity, the db15k preset (dim 256, FFN 1024, batch 2048, FGCL on).

The peer is what the public code (zjukg/MyGO ``train_mygo_fgc.py``) does at evaluation: it encodes all
entities once (``ent_embs, rel_embs = model()`` before the loop), then, for each test triple, makes two
``model.score`` calls of batch size 1 (head query, tail query: the decoder forward and the scores against
all entities), moves each score vector to numpy and ranks there (``utils.calculate_rank``:
``score[filter] = score[target] - 1; rank = #(>) + #(==) // 2 + 1``). ``public_style_eval`` below is our own
code doing exactly that; it runs on ``--public-sample`` test triples (both sides) and its per-query time is
extrapolated to the whole test split. mmbench scores the whole split for real (batched queries, filtered
ranking in torch).

    .venv/bin/python bench/mygo_speed.py [--public-sample 500] [--max-steps 0] [--eval-only]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

NUM_ENTITIES, NUM_RELATIONS, NUM_TRAIN, NUM_TEST = 12842, 279, 79222, 9902


def build(seed: int = 0):
    from mmbench.api import EntityModalities, KGTrainingData, TokenBags

    g = torch.Generator().manual_seed(seed)
    n = NUM_TRAIN + NUM_TEST
    triples = torch.stack([torch.randint(0, NUM_ENTITIES, (n,), generator=g),
                           torch.randint(0, NUM_RELATIONS, (n,), generator=g),
                           torch.randint(0, NUM_ENTITIES, (n,), generator=g)], 1)
    train, test = triples[:NUM_TRAIN], triples[NUM_TRAIN:]
    vis = torch.randint(0, 8192, (NUM_ENTITIES, 8), generator=g)
    txt = torch.randint(1000, 30000, (NUM_ENTITIES, 4), generator=g)
    codebook = torch.randn(8193, 32, generator=g)
    modalities = EntityModalities(num_entities=NUM_ENTITIES, tokens={
        "image": TokenBags.from_lists(vis.tolist(), 8192, embeddings=codebook, source="random codes"),
        "text": TokenBags.from_lists(txt.tolist(), 30522, source="random BERT ids")})
    data = KGTrainingData(task="db15k-sized", num_entities=NUM_ENTITIES, num_relations=NUM_RELATIONS,
                          train=train, valid=train[:0], modalities=modalities)
    return data, train, test


def public_style_eval(model, test: torch.Tensor, filter_triples: torch.Tensor) -> tuple[float, int]:
    """Entities encoded once, then one query forward of batch size 1 per (triple, side) and numpy ranking, as
    the public code's evaluation loop."""
    known_t: dict[tuple[int, int], list[int]] = {}
    known_h: dict[tuple[int, int], list[int]] = {}
    for h, r, t in filter_triples.tolist():
        known_t.setdefault((h, r), []).append(t)
        known_h.setdefault((t, r), []).append(h)
    net = model.module.eval()
    ranks = []
    t0 = time.perf_counter()
    with torch.no_grad():
        ents = net.entities()                               # once per evaluation, as the public code
        for h, r, t in test.tolist():
            for anchor, rel, target, known in ((h, r, t, known_t[(h, r)]),
                                               (t, r + NUM_RELATIONS, h, known_h[(t, r)])):
                score = (net.query(ents, torch.tensor([anchor]), torch.tensor([rel])) @ ents.t())[0].numpy()
                s_t = score[target]
                score[known] = s_t - 1
                ranks.append(int((score > s_t).sum() + (score == s_t).sum() // 2 + 1))
    return time.perf_counter() - t0, len(ranks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--public-sample", type=int, default=500, help="test triples for the public-style loop")
    ap.add_argument("--eval-only", action="store_true", help="skip the training epoch (evaluation speed only)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop the epoch after this many steps (0 = all)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from mmbench.config import build_config
    from mmbench.metrics.ranking import RankingEvaluator
    from mmbench.models.mygo import MyGO, MyGOConfig

    data, train, test = build()
    model = MyGO(build_config(MyGOConfig, "db15k", MyGO.presets, {}, "mygo"))
    torch.manual_seed(0)
    model.setup(data, 0)
    c = model.config
    steps = -(-NUM_TRAIN // c.batch_size)
    if args.max_steps:
        model.tail_queries = model.tail_queries[: args.max_steps * c.batch_size]
        model.head_queries = model.head_queries[: args.max_steps * c.batch_size]
    t0 = time.perf_counter()
    if not args.eval_only:
        model.train_epoch(1)
    train_s = time.perf_counter() - t0
    done = min(steps, args.max_steps) if args.max_steps else steps
    epoch_s = train_s * steps / done
    peak_train = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    filter_triples = torch.cat([train, test])
    ev = RankingEvaluator(NUM_ENTITIES, NUM_RELATIONS, filter_triples, batch_size=c.eval_batch_size)
    t0 = time.perf_counter()
    model.begin_scoring()
    with torch.no_grad():
        result = ev.evaluate(test, {"tail": lambda a, r, b: model.score_tails(a, r),
                                    "head": lambda a, r, b: model.score_heads(r, a)})
    model.end_scoring()
    ours_s = time.perf_counter() - t0
    sample = test[: args.public_sample]
    pub_s, pub_n = public_style_eval(model, sample, filter_triples)
    pub_total = pub_s / pub_n * 2 * NUM_TEST

    print(f"MyGO, db15k preset (dim {c.dim}, FFN {c.hidden_dim}, batch {c.batch_size}, {c.max_vis_tokens}+"
          f"{c.max_txt_tokens} tokens, FGCL mu {c.mu}), {NUM_ENTITIES:,} entities, {args.threads} threads")
    extra = f" (measured {done} of {steps} steps, scaled)" if done < steps else ""
    if not args.eval_only:
        print(f"  training: {epoch_s:8.1f} s per epoch{extra}; peak RSS {peak_train:,.0f} MB; "
              f"{model.num_parameters():,} parameters")
    print(f"  evaluation of {NUM_TEST:,} test triples x 2 sides (filtered, realistic ties):")
    print(f"    mmbench batched ranking        {ours_s:9.1f} s   (test MRR {result.metrics['both.realistic.mrr']:.4f})")
    print(f"    public code's loop (entities once, per-query forward + numpy rank) {pub_total:9.1f} s   "
          f"(extrapolated from {pub_n} queries, {pub_s / pub_n * 1000:.1f} ms each)")
    print(f"    speed-up: {pub_total / ours_s:.1f}x")
    print(f"  peak RSS overall {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
