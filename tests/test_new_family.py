"""A fourth task family is one module plus a card: a toy regression family runs end to end through
``mmbench eval``, the record store and the leaderboard, without editing mmbench."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from mmbench.cli import main

FAMILY_MODULE = '''
"""Toy node regression: predict a number per item; metric: mean absolute error (lower is better)."""
from dataclasses import dataclass

import torch

from mmbench.api import ModelAdapter, TrainSchedule
from mmbench.data import register_loader
from mmbench.jobs import FamilyJob, Scored, register_family
from mmbench.registry import register_model


@dataclass
class ToyData:
    task: str
    x: torch.Tensor
    y: torch.Tensor
    splits: dict
    verified: bool = True
    notes: tuple = ()

    def data_hash(self):
        return "toy-" + str(int(self.y.sum()))

    def stats(self):
        return {k: len(v) for k, v in self.splits.items()}

    def describe(self):
        return {}


@register_loader("toy-regression", status=lambda card: (True, "generated"))
def load(card, verify=True):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 3.0
    idx = torch.arange(60)
    return ToyData(card.name, x, y, {"train": idx[:40], "valid": idx[40:50], "test": idx[50:]})


class RegressionModel(ModelAdapter):
    family = "regression"

    def predict(self, x):
        raise NotImplementedError


@register_family("regression")
class RegressionJob(FamilyJob):
    default_selection = "neg_mae"

    @property
    def view(self):
        d = self.data
        return {"x": d.x, "y_train": d.y[d.splits["train"]], "train": d.splits["train"]}

    def has_split(self, split):
        return len(self.data.splits[split]) > 0

    def score(self, model, split):
        idx = self.data.splits[split]
        pred = model.predict(self.data.x[idx])
        mae = float((pred - self.data.y[idx]).abs().mean())
        return Scored({"mae": mae, "neg_mae": -mae}, pred)

    def probe(self, model):
        out = model.predict(self.data.x[:4])
        return (out,), f"predict gives {tuple(out.shape)}"

    def protocol(self, test):
        return {"metric": "mean absolute error"}


@dataclass
class MeanConfig(TrainSchedule):
    epochs: int = 2
    eval_every: int = 1


@register_model("toy-least-squares")
class LeastSquares(RegressionModel):
    Config = MeanConfig

    def setup(self, data, seed):
        self.x, self.y, self.train = data["x"], data["y_train"], data["train"]
        self.w = torch.zeros(4)

    def train_epoch(self, epoch):
        a = torch.cat([self.x[self.train], torch.ones(len(self.train), 1)], 1)
        self.w = torch.linalg.lstsq(a, self.y[:, None]).solution[:, 0]
        return float(((a @ self.w - self.y) ** 2).mean())

    def predict(self, x):
        return torch.cat([x, torch.ones(len(x), 1)], 1) @ self.w

    def state_dict(self):
        return {"w": self.w.clone()}

    def load_state_dict(self, state):
        self.w = state["w"].clone()
'''

CARD = """name: toy-reg
version: 1
family: regression
description: Toy regression (a family defined outside mmbench).
dataset: {loader: toy-regression}
splits: [train, valid, test]
metrics: [mae]
main_metric: mae
protocol: {}
"""


@pytest.fixture
def registries(monkeypatch):
    """Whatever the toy module registers is gone after the test."""
    from mmbench import data, jobs, registry

    toy = [(jobs._FAMILIES, "regression"), (data._LOADERS, "toy-regression"), (registry._MODELS, "toy-least-squares"),
           (registry._BY_FAMILY, ("toy-least-squares", "regression"))]
    yield
    for mapping, key in toy:
        mapping.pop(key, None)


def test_a_new_family_is_one_module_and_a_card(env, tmp_path, monkeypatch, capsys, registries):
    path = tmp_path / "toy_family.py"
    path.write_text(FAMILY_MODULE)
    spec = importlib.util.spec_from_file_location("toy_family", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "toy_family", module)
    spec.loader.exec_module(module)
    env.tasks.mkdir(parents=True, exist_ok=True)
    (env.tasks / "toy-reg.yaml").write_text(CARD)
    monkeypatch.setenv("MMBENCH_TASK_PATH", str(env.tasks))

    assert main(["eval", "--model", "toy-least-squares", "--task", "toy-reg", "--quiet", "--threads", "1"]) == 0
    rec = json.loads(next(env.results.rglob("*.json")).read_text())
    assert rec["task"]["family"] == "regression" and rec["protocol"] == {"metric": "mean absolute error"}
    assert rec["metrics"]["test"]["mae"] < 1e-4  # the toy target is exactly linear
    assert rec["training"]["selection"]["metric"] == "valid/neg_mae"
    assert main(["validate-adapter", "toy-least-squares", "--task", "toy-reg"]) == 0
    assert main(["leaderboard"]) == 0
    index = (env.leaderboard / "README.md").read_text()
    assert "## Regression" in index and "toy-least-squares" in index
