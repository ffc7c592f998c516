"""Filtered ranking: hand-checked cases and equality with PyKEEN's RankBasedEvaluator."""

from __future__ import annotations

import pytest
import torch

from mmbench.metrics.ranking import FilterIndex, RankingEvaluator, metrics_from_ranks, ranks_from_scores


def test_ranks_hand_checked():
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.1],
                           [0.2, 0.2, 0.2, 0.2]])
    opt, pess = ranks_from_scores(scores.clone(), torch.tensor([0, 3]))
    # row 0: one better (0.9), one tie (index 2) -> optimistic 2, pessimistic 3
    # row 1: all four tied -> optimistic 1, pessimistic 4
    assert opt.tolist() == [2.0, 1.0]
    assert pess.tolist() == [3.0, 4.0]
    # filtering index 1 of row 0 removes the better candidate; index 0 of row 1 removes a tie
    opt, pess = ranks_from_scores(scores.clone(), torch.tensor([0, 3]), torch.tensor([0, 1]), torch.tensor([1, 0]))
    assert opt.tolist() == [1.0, 1.0]
    assert pess.tolist() == [2.0, 3.0]


def test_metrics_hand_checked():
    opt = torch.tensor([1.0, 2.0, 10.0], dtype=torch.float64)
    pess = torch.tensor([1.0, 3.0, 12.0], dtype=torch.float64)
    m = metrics_from_ranks(opt, pess, "both")
    assert m["both.optimistic.mrr"] == pytest.approx((1 + 1 / 2 + 1 / 10) / 3)
    assert m["both.pessimistic.mr"] == pytest.approx((1 + 3 + 12) / 3)
    # realistic ranks 1, 2.5, 11: a realistic 2.5 is not a Hit@1 and not a Hit@2 but is a Hit@3
    assert m["both.realistic.mrr"] == pytest.approx((1 + 1 / 2.5 + 1 / 11) / 3)
    assert m["both.realistic.hits@1"] == pytest.approx(1 / 3)
    assert m["both.realistic.hits@3"] == pytest.approx(2 / 3)
    assert m["both.realistic.hits@10"] == pytest.approx(2 / 3)
    assert m["both.optimistic.hits@10"] == pytest.approx(1.0)


def test_filter_index_lookup():
    triples = torch.tensor([[0, 0, 1], [0, 0, 2], [1, 0, 2], [0, 1, 3], [0, 0, 1]])  # one duplicate
    f = FilterIndex.build(triples, "tail", num_relations=2)
    rows, cols = f.lookup(torch.tensor([0, 1, 2, 0]), torch.tensor([0, 0, 0, 1]))
    got = sorted(zip(rows.tolist(), cols.tolist(), strict=True))
    assert got == [(0, 1), (0, 2), (1, 2), (3, 3)]
    fh = FilterIndex.build(triples, "head", num_relations=2)
    rows, cols = fh.lookup(torch.tensor([2]), torch.tensor([0]))
    assert sorted(cols.tolist()) == [0, 1]


def _score_tables(num_entities: int, num_relations: int, seed: int) -> dict[str, torch.Tensor]:
    """Fixed integer-valued score tables (many ties): side -> (E * R, E), row = anchor * R + relation."""
    g = torch.Generator().manual_seed(seed)
    return {side: torch.randint(0, 4, (num_entities * num_relations, num_entities), generator=g).float()
            for side in ("head", "tail")}


def _mmbench_metrics(tables, test, filter_triples, num_entities, num_relations, batch_size):
    ev = RankingEvaluator(num_entities, num_relations, filter_triples, batch_size=batch_size)

    def fn(side):
        return lambda anchor, rel, b: tables[side][anchor * num_relations + rel].clone()

    return ev.evaluate(test, {"head": fn("head"), "tail": fn("tail")}).metrics


def _pykeen_metrics(tables, test, filter_triples, num_relations):
    from pykeen.evaluation import RankBasedEvaluator
    from pykeen.evaluation.evaluator import _evaluate_batch

    class FixedScores:
        """Duck-typed model: PyKEEN's evaluation loop only calls predict()."""

        def predict(self, hrt_batch, target, slice_size=None, mode=None):
            anchor = hrt_batch[:, 0] if target == "tail" else hrt_batch[:, 2]
            return tables[target][anchor * num_relations + hrt_batch[:, 1]].clone()

    evaluator = RankBasedEvaluator(filtered=True)
    for target in ("head", "tail"):
        for start in range(0, len(test), 7):
            _evaluate_batch(batch=test[start:start + 7], model=FixedScores(), target=target, evaluator=evaluator,
                            slice_size=None, all_pos_triples=filter_triples, relation_filter=None,
                            restrict_entities_to=None, mode=None)
    return evaluator.finalize()


PYKEEN_NAMES = {"mrr": "inverse_harmonic_mean_rank", "mr": "arithmetic_mean_rank", "hits@1": "hits_at_1",
                "hits@3": "hits_at_3", "hits@10": "hits_at_10"}


@pytest.mark.parametrize("seed,batch_size", [(0, 4), (1, 64)])
def test_equals_pykeen_rank_based_evaluator(seed, batch_size):
    num_entities, num_relations = 40, 3
    g = torch.Generator().manual_seed(100 + seed)
    triples = torch.stack([torch.randint(0, num_entities, (300,), generator=g),
                           torch.randint(0, num_relations, (300,), generator=g),
                           torch.randint(0, num_entities, (300,), generator=g)], 1)
    triples = torch.unique(triples, dim=0)[torch.randperm(len(torch.unique(triples, dim=0)), generator=g)]
    train, test = triples[:200], triples[200:]
    filter_triples = torch.cat([train, test])
    tables = _score_tables(num_entities, num_relations, seed)
    ours = _mmbench_metrics(tables, test, filter_triples, num_entities, num_relations, batch_size)
    theirs = _pykeen_metrics(tables, test, filter_triples, num_relations)
    compared = 0
    for side in ("head", "tail", "both"):
        for rank_type in ("optimistic", "pessimistic", "realistic"):
            for ours_name, pk_name in PYKEEN_NAMES.items():
                expected = theirs.get_metric(f"{side}.{rank_type}.{pk_name}")
                assert ours[f"{side}.{rank_type}.{ours_name}"] == pytest.approx(expected, abs=1e-6), \
                    (side, rank_type, ours_name)
                compared += 1
    assert compared == 45
    # the case is not degenerate: ties make the rank types differ
    assert ours["both.optimistic.mrr"] > ours["both.realistic.mrr"] > ours["both.pessimistic.mrr"]


def test_dedup_matches_naive_per_triple_ranking():
    """Scoring each distinct query once gives the same ranks as scoring every triple separately."""
    num_entities, num_relations = 30, 2
    g = torch.Generator().manual_seed(7)
    test = torch.tensor([[0, 0, 1], [0, 0, 2], [0, 0, 3], [5, 1, 1], [5, 1, 9], [7, 0, 1]])
    filter_triples = torch.cat([test, torch.tensor([[0, 0, 4], [2, 0, 1]])])
    tables = {s: torch.randint(0, 3, (num_entities * num_relations, num_entities), generator=g).float()
              for s in ("head", "tail")}
    ev = RankingEvaluator(num_entities, num_relations, filter_triples, batch_size=2)

    def table_fn(side):
        return lambda a, r, b: tables[side][a * num_relations + r].clone()

    res = ev.evaluate(test, {"head": table_fn("head"), "tail": table_fn("tail")})
    known = {tuple(t) for t in filter_triples.tolist()}
    for i, (h, r, t) in enumerate(test.tolist()):
        row = tables["tail"][h * num_relations + r]
        others = [e for e in range(num_entities) if e != t and (h, r, e) not in known]
        greater = sum(float(row[e]) > float(row[t]) for e in others)
        equal = sum(float(row[e]) == float(row[t]) for e in others)
        assert res.ranks["tail"][0][i] == greater + 1
        assert res.ranks["tail"][1][i] == greater + equal + 1
