"""The KGC job: train with validation-based selection, then score the test split once."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from mmbench.api import KGCModel
from mmbench.data.kg import KGDataset
from mmbench.errors import AdapterError
from mmbench.jobs import JobOptions, JobOutcome, selection_summary
from mmbench.metrics.bootstrap import mean_ci
from mmbench.metrics.ranking import HITS_AT, RankingEvaluator, RankingResult, ScoreFn
from mmbench.progress import Progress
from mmbench.tasks import TaskCard
from mmbench.training import train_with_selection


def check_scores(out: Any, expected_rows: int, num_entities: int, where: str) -> torch.Tensor:
    """Validate one batch of adapter scores; ``where`` names the method, batch and split."""
    if not isinstance(out, torch.Tensor):
        raise AdapterError(f"{where}: returned {type(out).__name__}, expected a torch.Tensor of shape "
                           f"({expected_rows}, {num_entities})")
    if tuple(out.shape) != (expected_rows, num_entities):
        raise AdapterError(f"{where}: returned shape {tuple(out.shape)}, expected (B={expected_rows}, "
                           f"num_entities={num_entities}): one row per query, one column per entity")
    if not out.is_floating_point():
        raise AdapterError(f"{where}: returned dtype {out.dtype}, expected a floating-point tensor")
    if bool(torch.isnan(out).any()):
        n = int(torch.isnan(out).any(1).sum())
        raise AdapterError(f"{where}: {n} of {expected_rows} score rows contain NaN")
    return out


def score_fns(model: KGCModel, num_entities: int, split: str) -> dict[str, ScoreFn]:
    """Wrap the adapter's two methods: query batches go to the adapter's device, every returned batch is
    checked and comes back to the CPU for ranking."""
    name = type(model).__name__
    dev = getattr(model, "device", torch.device("cpu"))

    def tails(anchor: torch.Tensor, rel: torch.Tensor, b: int) -> torch.Tensor:
        with torch.no_grad():
            out = model.score_tails(anchor.to(dev), rel.to(dev))
        return check_scores(out, len(anchor), num_entities, f"{name}.score_tails (batch {b}, {split} split)") \
            .detach().cpu().clone()

    def heads(anchor: torch.Tensor, rel: torch.Tensor, b: int) -> torch.Tensor:
        with torch.no_grad():
            out = model.score_heads(rel.to(dev), anchor.to(dev))
        return check_scores(out, len(anchor), num_entities, f"{name}.score_heads (batch {b}, {split} split)") \
            .detach().cpu().clone()

    return {"tail": tails, "head": heads}


def selection_key(card: TaskCard) -> str:
    return card.protocol.get("selection_metric", "both.realistic.mrr")


def evaluate_split(model: KGCModel, ds: KGDataset, split: str, evaluator: RankingEvaluator,
                   progress: Progress) -> RankingResult:
    triples = getattr(ds, split)
    bar = progress.bar(evaluator.num_batches(triples), f"score {split}", unit="batch")
    model.begin_scoring()
    try:
        return evaluator.evaluate(triples, score_fns(model, ds.num_entities, split), on_batch=lambda: bar.update())
    finally:
        model.end_scoring()
        bar.close()


def rank_intervals(result: RankingResult, rank_type: str, resamples: int, seed: int) -> dict[str, list[float]]:
    """95% bootstrap intervals of the 'both' metrics, resampling (triple, side) queries."""
    opt = torch.cat([r[0] for r in result.ranks.values()]).numpy()
    pess = torch.cat([r[1] for r in result.ranks.values()]).numpy()
    ranks = {"optimistic": opt, "pessimistic": pess, "realistic": (opt + pess) / 2}[rank_type]
    per_query = {"mrr": 1.0 / ranks, "mr": ranks, **{f"hits@{k}": (ranks <= k).astype(np.float64) for k in HITS_AT}}
    cis = mean_ci(per_query, resamples=resamples, seed=seed)
    return {f"both.{rank_type}.{k}": [lo, hi] for k, (lo, hi) in cis.items()}


def run_job(model: KGCModel, ds: KGDataset, card: TaskCard, seed: int, progress: Progress,
            options: JobOptions) -> JobOutcome:
    """Train (or load a checkpoint), select on validation, score test once."""
    bs = getattr(model.config, "eval_batch_size", 512)
    valid_eval = RankingEvaluator(ds.num_entities, ds.num_relations, torch.cat([ds.train, ds.valid]), bs)
    key = selection_key(card)
    model.setup(ds.training_view(), seed)
    has_valid = len(ds.valid) > 0

    def validate() -> tuple[float, RankingResult]:
        result = evaluate_split(model, ds, "valid", valid_eval, progress)
        return result.metrics[key], result

    if options.checkpoint_state is not None:
        model.load_state_dict(options.checkpoint_state)
        from mmbench.training import Selection

        sel = Selection(epoch=0, value=None, result=None)
        reason = "checkpoint given"
    else:
        sel = train_with_selection(model, validate if has_valid else None, progress)
        reason = "no validation split" if not has_valid else "no training epochs"
    t0 = time.perf_counter()
    valid_result = sel.result if sel.result is not None else (validate()[1] if has_valid else None)
    test_eval = RankingEvaluator(ds.num_entities, ds.num_relations, torch.cat([ds.train, ds.valid, ds.test]), bs)
    test_result = evaluate_split(model, ds, "test", test_eval, progress)
    eval_seconds = sel.eval_seconds + time.perf_counter() - t0
    rank_type = card.protocol.get("rank_type", "realistic")
    return JobOutcome(
        metrics={"valid": valid_result.metrics if valid_result else {}, "test": test_result.metrics},
        intervals=rank_intervals(test_result, rank_type, options.bootstrap_resamples, options.bootstrap_seed),
        training={"history": sel.history, "selection": selection_summary(sel, key, reason),
                  "train_seconds": round(sel.train_seconds, 3), "eval_seconds": round(eval_seconds, 3)},
        protocol={"filtered": True, "filter_splits": ["train", "valid", "test"],
                  "valid_filter_splits": ["train", "valid"], "rank_type": rank_type,
                  "ties": "realistic = (optimistic + pessimistic) / 2; all three reported",
                  "sides": ["head", "tail"],
                  "bootstrap": {"resamples": options.bootstrap_resamples, "seed": options.bootstrap_seed,
                                "unit": "(triple, side) query", "interval": "95% percentile"}},
        samples=test_result.sample_rows() if options.log_samples else None)
