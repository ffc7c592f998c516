"""Bench peers do what the public code does (README, Performance): checked on fakes, cheaply."""

from __future__ import annotations

import importlib.util

import torch

from mmbench.paths import PROJECT_ROOT


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _FakeNet(torch.nn.Module):
    """entities() -> (E, d); query(ents, anchor, rel) -> (1, d); counts the entity encodings."""

    def __init__(self, num_entities: int, dim: int = 4):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.table = torch.randn(num_entities, dim, generator=g)
        self.rel = torch.randn(1000, dim, generator=g)
        self.encodings = 0

    def entities(self):
        self.encodings += 1
        return self.table

    def query(self, ents, anchor, rel):
        return ents[anchor] * self.rel[rel]


class _FakeModel:
    def __init__(self, n):
        self.module = _FakeNet(n)


def test_mygo_public_style_eval_encodes_entities_once_per_evaluation():
    bench = _bench("mygo_speed")
    n = bench.NUM_ENTITIES
    g = torch.Generator().manual_seed(1)
    test = torch.stack([torch.randint(0, n, (5,), generator=g), torch.randint(0, 10, (5,), generator=g),
                        torch.randint(0, n, (5,), generator=g)], 1)
    model = _FakeModel(n)
    seconds, queries = bench.public_style_eval(model, test, test)
    assert queries == 10 and model.module.encodings == 1   # once per evaluation, as train_mygo_fgc.py
