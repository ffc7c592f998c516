"""labelprop (baselines/labelprop.py): Zhou et al. 2004 label propagation, hand-checked; refuses zero-shot splits."""

from __future__ import annotations

import json
import math

import pytest
import torch

from baselines.labelprop import LabelPropagation, LabelPropConfig, normalized_adjacency, propagate
from mmbench.api import ClassificationTrainingData
from mmbench.cli import main
from mmbench.data.graph import MultimodalGraph
from mmbench.errors import ConfigError
from mmbench.registry import all_models


def graph(n, edges, labels, names=("a", "b")):
    ei = torch.tensor(edges, dtype=torch.long).t().reshape(2, -1)
    return MultimodalGraph(num_nodes=n, texts=(None,) * n, images=(None,) * n, kinds=("node",) * n,
                           edge_index=ei, edge_type=torch.zeros(ei.shape[1], dtype=torch.long),
                           labels=torch.tensor(labels), class_names=names)


def view(g, train, test, train_classes=(0, 1), candidates=(0, 1)):
    train, test = torch.tensor(train), torch.tensor(test)
    return ClassificationTrainingData(task="hand", graph=g.without_answers(train), train_nodes=train,
                                      valid_nodes=test[:0], test_nodes=test, class_names=g.class_names,
                                      train_classes=train_classes, candidate_classes=candidates)


def scores(g, train, test, **cfg):
    m = LabelPropagation(LabelPropConfig(**cfg))
    m.setup(view(g, train, test), 0)
    return m, m.predict(torch.tensor(test))


PATH = [(0, 1), (1, 2), (2, 3)]  # 0 - 1 - 2 - 3, node 0 labelled a, node 3 labelled b


def test_one_step_on_a_path_by_hand():
    """Degrees 1, 2, 2, 1: S_01 = S_23 = 1/sqrt(2), S_12 = 1/2. One step from Y0 with alpha 0.5:
    Y[0] = 0.5 * S_01 * Y0[1] + 0.5 * Y0[0] = (0.5, 0); Y[1] = 0.5 * (S_10 Y0[0] + S_12 Y0[2]) = (0.5/sqrt2, 0)."""
    g = graph(4, PATH, [0, 0, 1, 1])
    _, s = scores(g, [0, 3], [0, 1, 2, 3], alpha=0.5, iterations=1)
    h = 0.5 / math.sqrt(2)
    assert torch.allclose(s, torch.tensor([[0.5, 0.0], [h, 0.0], [0.0, h], [0.0, 0.5]]))
    # two steps: Y[1] = 0.5 * (S_10 * Y1[0] + S_12 * Y1[2]) = 0.5 * ((0.5, 0) / sqrt2 + (0, h) / 2)
    _, s2 = scores(g, [0, 3], [1], alpha=0.5, iterations=2)
    assert torch.allclose(s2, torch.tensor([[h * 0.5, h * 0.25]]))
    assert s2.argmax(1).tolist() == [0]  # nearer to the a-labelled end


def test_converges_to_the_closed_form():
    """Y* = (1 - alpha) (I - alpha S)^-1 Y0 (Zhou et al. 2004, eq. 2 of the iteration's limit)."""
    gen = torch.Generator().manual_seed(0)
    n = 30
    edges = torch.randint(0, n, (80, 2), generator=gen).tolist()
    labels = (torch.arange(n) % 3).tolist()
    g = graph(n, edges, labels, names=("a", "b", "c"))
    train = list(range(0, n, 4))
    m = LabelPropagation(LabelPropConfig(alpha=0.9, iterations=400))
    m.setup(view(g, train, list(range(n)), (0, 1, 2), (0, 1, 2)), 0)
    s = normalized_adjacency(g.edge_index, n).to_dense()
    y0 = torch.zeros(n, 3, dtype=torch.float64)
    y0[train, torch.tensor(labels)[train]] = 1
    closed = 0.1 * torch.linalg.solve(torch.eye(n, dtype=torch.float64) - 0.9 * s, y0)
    assert torch.allclose(m.scores.double(), closed, atol=1e-5)
    assert torch.allclose(s, s.t()) and float(s.diagonal().abs().sum()) == 0.0


def test_edges_are_undirected_merged_and_loop_free():
    """One direction only, a parallel edge, a reversed duplicate and a self-loop give the plain path."""
    clean = graph(4, PATH + [(b, a) for a, b in PATH], [0, 0, 1, 1])
    messy = graph(4, [(0, 1), (0, 1), (2, 1), (2, 3), (3, 2), (1, 1)], [0, 0, 1, 1])
    a = normalized_adjacency(clean.edge_index, 4).to_dense()
    b = normalized_adjacency(messy.edge_index, 4).to_dense()
    assert torch.equal(a, b) and a[0, 1] == a[1, 0] == pytest.approx(1 / math.sqrt(2))
    _, s1 = scores(clean, [0, 3], [1, 2])
    _, s2 = scores(messy, [0, 3], [1, 2])
    assert torch.equal(s1, s2)


def test_isolated_and_unlabelled_nodes():
    g = graph(5, PATH, [0, 0, 1, 1, 1])  # node 4 has no edge
    m, s = scores(g, [0, 3, 4], [4, 1])
    assert torch.allclose(s[0], torch.tensor([0.0, 0.1]))  # isolated, labelled b: (1 - alpha) * its own Y0 row
    assert m.describe() == {"alpha": 0.9, "iterations": 50, "undirected_edges": 3, "labelled_nodes": 3}
    assert m.num_parameters() == 0 and m.state_dict() == {}
    # an isolated node without a label scores zero everywhere
    _, s = scores(g, [0, 3], [4])
    assert torch.equal(s, torch.zeros(1, 2))
    # alpha 0: the training labels and nothing else
    _, s = scores(g, [0, 3], [0, 1, 2, 3], alpha=0.0)
    assert torch.equal(s, torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 1.0]]))


def test_bad_config_and_zero_shot_are_refused():
    g = graph(4, PATH, [0, 0, 1, 1])
    assert LabelPropConfig(epochs=5).epochs == 0  # nothing to train
    with pytest.raises(ConfigError, match=r"alpha must be in \[0, 1\)"):
        LabelPropagation(LabelPropConfig(alpha=1.0)).setup(view(g, [0, 3], [1, 2]), 0)
    zs = view(g, [0], [2, 3], train_classes=(0,), candidates=(1,))
    with pytest.raises(ConfigError, match=r"labelprop: candidate classes \[1\] \(b\) never occur in training") as e:
        LabelPropagation().setup(zs, 0)
    assert "--model lm-cls --set mode=likelihood" in str(e.value)
    assert propagate(normalized_adjacency(g.edge_index, 4), torch.eye(4, 2, dtype=torch.float64), 0.5, 0).equal(
        torch.eye(4, 2, dtype=torch.float64))  # zero iterations: Y0


def test_registered():
    assert "labelprop" in all_models() and all_models()["labelprop"].family == "classification"


def test_cli_refuses_synth_cls_zs_and_runs_synth_cls(env, capsys):
    assert main(["eval", "--model", "labelprop", "--task", "synth-cls-zs", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "labelprop: candidate classes [4, 5, 6, 7] (savanna, alpine, arctic, tropical) never occur" in err
    assert "lm-cls --set mode=likelihood" in err
    assert not env.results.exists() or not list(env.results.rglob("*.json"))

    assert main(["eval", "--model", "labelprop", "--task", "synth-cls", "--quiet"]) == 0
    [path] = sorted(env.results.rglob("*.json"))
    rec = json.loads(path.read_text())
    assert rec["model"]["config"] == {"epochs": 0, "eval_every": 1, "patience": 0, "eval_batch_size": 512,
                                      "alpha": 0.9, "iterations": 50}
    assert rec["training"]["history"] == [] and rec["model"]["num_parameters"] == 0
    # structure alone: 216 of 240 test nodes (homophily 0.7, 60% of the nodes labelled)
    assert rec["metrics"]["test"]["accuracy"] == pytest.approx(0.9)
