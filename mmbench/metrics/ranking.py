"""Filtered rank-based evaluation for knowledge-graph completion.

Semantics follow PyKEEN's ``RankBasedEvaluator`` (pykeen 1.11):
  optimistic  = #(s > s_true) + 1
  pessimistic = #(s >= s_true)            (the true answer counts itself)
  realistic   = (optimistic + pessimistic) / 2
Scores of other known answers (the filter) never count. Hits@k uses ``rank <= k``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

RANK_TYPES = ("optimistic", "pessimistic", "realistic")
SIDES = ("head", "tail")
HITS_AT = (1, 3, 10)

ScoreFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
"""(anchors (B,), relations (B,), batch_index) -> scores (B, num_entities)."""


@dataclass(frozen=True)
class FilterIndex:
    """Known answers per (anchor, relation) in CSR form, for one prediction side.

    keys:    (K,) long, sorted unique ``anchor * num_relations + relation``
    offsets: (K + 1,) long
    answers: (total,) long entity ids; key ``k`` owns ``answers[offsets[k]:offsets[k+1]]``
    """

    keys: torch.Tensor
    offsets: torch.Tensor
    answers: torch.Tensor
    num_relations: int

    @staticmethod
    def build(triples: torch.Tensor, side: str, num_relations: int) -> FilterIndex:
        """triples: (N, 3) long (h, r, t). side 'tail' keys on (h, r); 'head' keys on (t, r)."""
        anchor, answer = (triples[:, 0], triples[:, 2]) if side == "tail" else (triples[:, 2], triples[:, 0])
        key = anchor * num_relations + triples[:, 1]
        pair = torch.unique(torch.stack([key, answer], 1), dim=0)  # sorted by key, then answer; deduplicated
        keys, counts = torch.unique_consecutive(pair[:, 0], return_counts=True)
        offsets = torch.zeros(keys.numel() + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(counts, 0)
        return FilterIndex(keys=keys, offsets=offsets, answers=pair[:, 1].contiguous(), num_relations=num_relations)

    def lookup(self, anchors: torch.Tensor, relations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat (row, entity) positions of all known answers for a batch of B queries."""
        key = anchors * self.num_relations + relations
        if self.keys.numel() == 0:
            empty = torch.zeros(0, dtype=torch.long)
            return empty, empty
        pos = torch.searchsorted(self.keys, key).clamp(max=self.keys.numel() - 1)
        counts = torch.where(self.keys[pos] == key, self.offsets[pos + 1] - self.offsets[pos], 0)
        rows = torch.repeat_interleave(torch.arange(key.numel()), counts)
        starts = torch.repeat_interleave(self.offsets[pos], counts)
        within = torch.arange(rows.numel()) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        return rows, self.answers[starts + within]


def ranks_from_scores(scores: torch.Tensor, targets: torch.Tensor,
                      filter_rows: torch.Tensor | None = None,
                      filter_cols: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimistic and pessimistic ranks of ``targets`` among all entities.

    scores: (B, E) float, higher is better (modified in place: pass a copy you can spare)
    targets: (B,) long
    filter_rows, filter_cols: positions of other known answers, excluded from the ranking
    returns: (optimistic (B,), pessimistic (B,)) as float64
    """
    true = scores.gather(1, targets[:, None])
    if filter_rows is not None:
        scores[filter_rows, filter_cols] = float("nan")  # NaN compares False both ways
    scores.scatter_(1, targets[:, None], float("nan"))
    greater = (scores > true).sum(1)
    equal = (scores == true).sum(1)
    optimistic = (greater + 1).double()
    return optimistic, optimistic + equal.double()


def metrics_from_ranks(optimistic: torch.Tensor, pessimistic: torch.Tensor, prefix: str) -> dict[str, float]:
    """MRR, MR and Hits@k for the three rank types, keys like ``f'{prefix}.realistic.mrr'``."""
    out: dict[str, float] = {}
    if optimistic.numel() == 0:
        return out
    for rank_type, ranks in (("optimistic", optimistic), ("pessimistic", pessimistic),
                             ("realistic", (optimistic + pessimistic) / 2)):
        out[f"{prefix}.{rank_type}.mrr"] = float((1.0 / ranks).mean())
        out[f"{prefix}.{rank_type}.mr"] = float(ranks.mean())
        for k in HITS_AT:
            out[f"{prefix}.{rank_type}.hits@{k}"] = float((ranks <= k).double().mean())
    return out


@dataclass
class RankingResult:
    """Per-query ranks for one split; ``metrics`` flattens them (sides head/tail/both)."""

    triples: torch.Tensor  # (N, 3)
    ranks: dict[str, tuple[torch.Tensor, torch.Tensor]]  # side -> (optimistic (N,), pessimistic (N,))

    @property
    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for side, (opt, pess) in self.ranks.items():
            out.update(metrics_from_ranks(opt, pess, side))
        if len(self.ranks) > 1:
            opt = torch.cat([r[0] for r in self.ranks.values()])
            pess = torch.cat([r[1] for r in self.ranks.values()])
            out.update(metrics_from_ranks(opt, pess, "both"))
        return out

    def sample_rows(self) -> list[dict]:
        """One row per (triple, side): the per-query log saved with ``--log-samples``."""
        rows = []
        t = self.triples.tolist()
        for side, (opt, pess) in self.ranks.items():
            for (h, r, tail), o, p in zip(t, opt.tolist(), pess.tolist(), strict=True):
                rows.append({"h": h, "r": r, "t": tail, "side": side, "rank_opt": o, "rank_pess": p})
        return rows


class RankingEvaluator:
    """Filtered ranking of every query against all entities, vectorised and chunked.

    Queries are deduplicated: each distinct (anchor, relation) is scored once, in sorted order, and
    the scores are shared by every triple that asks it. Memory is bounded by ``batch_size * E``.
    """

    def __init__(self, num_entities: int, num_relations: int, filter_triples: torch.Tensor,
                 batch_size: int = 512):
        self.num_entities = num_entities
        self.num_relations = num_relations
        self.batch_size = batch_size
        self.filters = {side: FilterIndex.build(filter_triples, side, num_relations) for side in SIDES}

    def num_batches(self, triples: torch.Tensor, sides=SIDES) -> int:
        total = 0
        for side in sides:
            anchor = triples[:, 0] if side == "tail" else triples[:, 2]
            n = torch.unique(anchor * self.num_relations + triples[:, 1]).numel()
            total += -(-n // self.batch_size)
        return total

    def evaluate(self, triples: torch.Tensor, score_fns: dict[str, ScoreFn], sides=SIDES,
                 on_batch: Callable[[], None] | None = None) -> RankingResult:
        """triples: (N, 3) long. score_fns: side -> ScoreFn ('tail' scores (h, r, ?), 'head' (?, r, t))."""
        ranks = {}
        for side in sides:
            ranks[side] = self._rank_side(triples, side, score_fns[side], on_batch)
        return RankingResult(triples=triples, ranks=ranks)

    def _rank_side(self, triples: torch.Tensor, side: str, score_fn: ScoreFn,
                   on_batch: Callable[[], None] | None) -> tuple[torch.Tensor, torch.Tensor]:
        n = triples.shape[0]
        anchor, target = (triples[:, 0], triples[:, 2]) if side == "tail" else (triples[:, 2], triples[:, 0])
        key = anchor * self.num_relations + triples[:, 1]
        order = torch.argsort(key, stable=True)
        uniq, inverse, counts = torch.unique(key[order], return_inverse=True, return_counts=True)
        first_triple = torch.zeros(uniq.numel() + 1, dtype=torch.long)
        first_triple[1:] = torch.cumsum(counts, 0)
        opt_all = torch.empty(n, dtype=torch.float64)
        pess_all = torch.empty(n, dtype=torch.float64)
        filt = self.filters[side]
        for b, start in enumerate(range(0, uniq.numel(), self.batch_size)):
            q = uniq[start: start + self.batch_size]
            scores = score_fn(q // self.num_relations, q % self.num_relations, b)  # (Bq, E)
            t0, t1 = int(first_triple[start]), int(first_triple[start + q.numel()])
            # triples of this chunk, processed in sub-chunks so memory stays at batch_size * E
            for s in range(t0, t1, self.batch_size):
                idx = order[s: min(s + self.batch_size, t1)]
                rows = inverse[s: s + idx.numel()] - start
                sub = scores.index_select(0, rows)
                f_rows, f_cols = filt.lookup(anchor[idx], triples[idx, 1])
                opt, pess = ranks_from_scores(sub, target[idx], f_rows, f_cols)
                opt_all[idx], pess_all[idx] = opt, pess
            if on_batch is not None:
                on_batch()
        return opt_all, pess_all
