"""The KGC family: filtered ranking of head and tail queries (``mmbench.jobs.run_job`` runs the job)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmbench.api import KGCModel
from mmbench.data.kg import KGDataset
from mmbench.errors import AdapterError
from mmbench.jobs import FamilyJob, JobOptions, Scored, register_family
from mmbench.metrics.bootstrap import mean_ci
from mmbench.metrics.ranking import HITS_AT, RankingEvaluator, RankingResult, ScoreFn
from mmbench.progress import Progress
from mmbench.tasks import TaskCard


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


@register_family("kgc")
class KGCJob(FamilyJob):
    """Link prediction: filtered ranking of every entity for head and tail queries (``RankingEvaluator``)."""

    default_selection = "both.realistic.mrr"

    def __init__(self, data: KGDataset, card: TaskCard, options: JobOptions, progress: Progress):
        super().__init__(data, card, options, progress)
        self._view = data.training_view()
        self.rank_type = card.protocol.get("rank_type", "realistic")
        self._evaluators: dict[str, RankingEvaluator] = {}

    @property
    def view(self) -> Any:
        return self._view

    def has_split(self, split: str) -> bool:
        return len(getattr(self.data, split)) > 0

    def evaluator(self, split: str, batch_size: int) -> RankingEvaluator:
        """Filter: train + valid for validation, train + valid + test for test (built once per split)."""
        if split not in self._evaluators:
            ds = self.data
            known = [ds.train, ds.valid] + ([ds.test] if split == "test" else [])
            self._evaluators[split] = RankingEvaluator(ds.num_entities, ds.num_relations, torch.cat(known),
                                                       batch_size)
        return self._evaluators[split]

    def score(self, model: KGCModel, split: str) -> Scored:
        evaluator = self.evaluator(split, getattr(model.config, "eval_batch_size", 512))
        result = evaluate_split(model, self.data, split, evaluator, self.progress)
        return Scored(result.metrics, result)

    def probe(self, model: KGCModel) -> tuple[Any, str]:
        ds = self.data
        queries = (ds.valid if len(ds.valid) else ds.train)[:8]
        model.begin_scoring()
        try:
            fns = score_fns(model, ds.num_entities, "valid")
            out = (fns["tail"](queries[:, 0], queries[:, 1], 0), fns["head"](queries[:, 2], queries[:, 1], 0))
        finally:
            model.end_scoring()
        return out, f"score_tails and score_heads give ({len(queries)}, {ds.num_entities}) {out[0].dtype}, no NaN"

    def intervals(self, test: Scored) -> dict[str, list[float]]:
        o = self.options
        return rank_intervals(test.detail, self.rank_type, o.bootstrap_resamples, o.bootstrap_seed)

    def protocol(self, test: Scored) -> dict[str, Any]:
        return {"filtered": True, "filter_splits": ["train", "valid", "test"],
                "valid_filter_splits": ["train", "valid"], "rank_type": self.rank_type,
                "ties": "realistic = (optimistic + pessimistic) / 2; all three reported",
                "sides": ["head", "tail"], "bootstrap": self.bootstrap_protocol("(triple, side) query")}

    def samples(self, test: Scored) -> list[dict[str, Any]]:
        return test.detail.sample_rows()
