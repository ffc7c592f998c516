"""The protocol: an adapter never receives the test answers, and selection uses validation only."""

from __future__ import annotations

import dataclasses

import torch

from mmbench.api import KGCModel, KGTrainingData, TrainSchedule
from mmbench.data.kg import KGDataset
from mmbench.data.synth_kg import DEFAULTS, generate
from mmbench.jobs import JobOptions
from mmbench.progress import Progress
from mmbench.runner import run_family_job as run_job
from mmbench.tasks import parse_card

SMALL = {**DEFAULTS, "num_entities": 300, "num_types": 4, "num_regions": 5, "num_relations": 6,
         "num_triples": 1500, "domain_types_per_relation": 2}
CARD = parse_card({"name": "synth-small", "version": 1, "family": "kgc", "description": "test",
                   "dataset": {"loader": "synth-mmkg"}, "splits": ["train", "valid", "test"],
                   "metrics": ["mrr"], "main_metric": "mrr"}, "<test>")


def reachable(root, limit: int = 100_000) -> list:
    """Every object reachable from ``root`` through attributes, dataclass fields and containers."""
    seen: dict[int, object] = {}
    stack = [root]
    while stack and len(seen) < limit:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, type(None), type)):
            continue
        seen[id(obj)] = obj
        if isinstance(obj, torch.Tensor):
            continue
        if isinstance(obj, dict):
            stack += list(obj.keys()) + list(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack += list(obj)
        elif dataclasses.is_dataclass(obj):
            stack += [getattr(obj, f.name) for f in dataclasses.fields(obj)]
        elif hasattr(obj, "__dict__"):
            stack += list(vars(obj).values())
    return list(seen.values())


@dataclasses.dataclass
class SpyConfig(TrainSchedule):
    epochs: int = 2
    eval_every: int = 1


class SpyAdapter(KGCModel):
    """Records everything the harness hands it; scores from a fixed random table."""

    Config = SpyConfig

    def setup(self, data: KGTrainingData, seed: int) -> None:
        self.received = reachable(data)
        self.data = data
        self.calls: list[tuple[str, int, torch.Tensor, torch.Tensor]] = []
        g = torch.Generator().manual_seed(seed)
        self.table = torch.rand(data.num_entities, data.num_entities, generator=g)
        self.epoch_seen: list[int] = []

    def train_epoch(self, epoch: int) -> float:
        self.epoch_seen.append(epoch)
        return 0.0

    def score_tails(self, heads, relations):
        self.calls.append(("tails", len(self.epoch_seen), heads.clone(), relations.clone()))
        return self.table[heads]

    def score_heads(self, relations, tails):
        self.calls.append(("heads", len(self.epoch_seen), relations.clone(), tails.clone()))
        return self.table[tails]


def _rows(t: torch.Tensor) -> set[tuple[int, ...]]:
    return {tuple(r) for r in t.tolist()}


def test_adapter_cannot_reach_test_answers():
    ds: KGDataset = generate(SMALL, task="synth-small")
    test_only = _rows(ds.test) - _rows(ds.train) - _rows(ds.valid)
    assert len(test_only) > 100
    model = SpyAdapter()
    run_job(model, ds, CARD, 0, Progress(quiet=True), JobOptions(bootstrap_resamples=10))

    # 1. no object reachable from what setup() received is the harness's dataset or its test tensor
    assert not any(o is ds or o is ds.test or isinstance(o, KGDataset) for o in model.received)
    # 2. no (N, 3) integer tensor reachable from it contains a test-only triple
    tensors = [o for o in model.received if isinstance(o, torch.Tensor)]
    triples_seen: set[tuple[int, ...]] = set()
    for t in tensors:
        if t.dim() == 2 and t.shape[1] == 3 and not t.is_floating_point():
            triples_seen |= _rows(t)
    assert triples_seen, "the spy should have seen the training triples"
    assert not (triples_seen & test_only)
    # 3. the training view shares no storage with the harness's splits
    for t in tensors:
        assert t.untyped_storage().data_ptr() != ds.test.untyped_storage().data_ptr()
    # 4. scoring calls carry only (anchor, relation): never the answers
    for _, _, a, b in model.calls:
        assert a.dim() == 1 and b.dim() == 1


def test_test_split_scored_once_after_training_and_queries_are_deduplicated():
    ds = generate(SMALL, task="synth-small")
    model = PhaseSpy()
    out = run_job(model, ds, CARD, 0, Progress(quiet=True), JobOptions(bootstrap_resamples=10))
    # scoring phases: validation after epoch 1, validation after epoch 2, then test once
    assert model.phases == 3
    assert model.epoch_seen == [1, 2]
    last = [(a, b) for kind, phase, a, b in model.calls if phase == 3]
    tails = [(h, r) for kind, phase, a, b in model.calls if phase == 3 and kind == "tails"
             for h, r in zip(a.tolist(), b.tolist(), strict=True)]
    heads = [(t, r) for kind, phase, a, b in model.calls if phase == 3 and kind == "heads"
             for r, t in zip(a.tolist(), b.tolist(), strict=True)]
    assert last
    # each distinct test query is asked exactly once, and nothing else is asked in the test phase
    assert sorted(tails) == sorted({(h, r) for h, r, _ in ds.test.tolist()})
    assert sorted(heads) == sorted({(t, r) for _, r, t in ds.test.tolist()})
    assert out.training["selection"]["metric"] == "valid/both.realistic.mrr"
    assert out.training["selection"]["checks"] == 2


class PhaseSpy(SpyAdapter):
    """Numbers each scoring phase (the harness calls begin_scoring once per split evaluation)."""

    def setup(self, data, seed):
        super().setup(data, seed)
        self.phases = 0

    def begin_scoring(self):
        self.phases += 1

    def score_tails(self, heads, relations):
        self.calls.append(("tails", self.phases, heads.clone(), relations.clone()))
        return self.table[heads]

    def score_heads(self, relations, tails):
        self.calls.append(("heads", self.phases, relations.clone(), tails.clone()))
        return self.table[tails]
