"""logreg and sgc (baselines/linear.py), and features=tfidf for every feature-based classifier on synth-cls."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_classification_baselines import homophilous, scores_after, view

from baselines.gnn import GAT, GCN, MLP, RGCN, GATConfig, GNNConfig, GraphSAGE, RGCNConfig
from baselines.linear import SGC, LinearConfig, LogReg, SGCConfig
from mmbench.cli import main
from mmbench.config import build_config
from mmbench.data import load_task_data
from mmbench.data.graph import MultimodalGraph
from mmbench.errors import ConfigError
from mmbench.jobs.classification import training_view
from mmbench.tasks import get_card


@pytest.fixture(scope="module")
def synth_cls(tmp_path_factory):
    """The bundled synth-cls task (images rendered into a module tmp cache)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMBENCH_CACHE", str(tmp_path_factory.mktemp("synth-cache")))
        return load_task_data(get_card("synth-cls"))


TFIDF_MODELS = {"mlp": (MLP, GNNConfig), "gcn": (GCN, GNNConfig), "sage": (GraphSAGE, GNNConfig),
                "gat": (GAT, GATConfig), "rgcn": (RGCN, RGCNConfig), "logreg": (LogReg, LinearConfig),
                "sgc": (SGC, SGCConfig)}


@pytest.mark.parametrize("name", sorted(TFIDF_MODELS))
def test_tfidf_features_for_every_feature_model_on_synth_cls(synth_cls, name):
    cls, cfg = TFIDF_MODELS[name]
    data = training_view(synth_cls)
    extra = {"Cs": [1.0]} if cfg in (LinearConfig, SGCConfig) else {"epochs": 3}
    model = cls(cfg(features="tfidf", **extra))
    scores, losses = scores_after(model, data, model.config.epochs)
    assert scores.shape == (len(data.test_nodes), 6) and bool(torch.isfinite(scores).all())
    info = model.describe()["features"]
    train_words = {w for v in data.train_nodes.tolist() for w in synth_cls.graph.texts[v].split() if len(w) > 1}
    assert info["spec"] == "tfidf" and info["tfidf"]["vocabulary"] == len(train_words)
    assert info["tfidf"]["fitted_on"] == len(data.train_nodes) == 720
    assert info["blocks"] == {"tfidf": [0, len(train_words)]}
    assert all(np.isfinite(losses))
    if name in ("logreg", "sgc"):   # sparse end to end
        assert model.describe()["input"]["sparse"] is True
    if name == "sgc":               # the bag of words plus neighbours' words: well above chance (1/6)
        acc = float((scores.argmax(1) == synth_cls.graph.labels[data.test_nodes]).float().mean())
        assert acc > 0.6


# --------------------------------------------------------------------------- selection of C, determinism
def test_logreg_chooses_C_on_validation_through_the_harness(env):
    cs = [0.001, 0.1, 10.0, 1000.0]
    assert main(["eval", "--model", "logreg", "--task", "synth-cls", "--set", "features=tfidf",
                 "--set", f"Cs=[{', '.join(map(str, reversed(cs)))}]", "--quiet"]) == 0
    [path] = sorted((env.results / "synth-cls" / "logreg").glob("*.json"))
    rec = json.loads(path.read_text())
    history = rec["training"]["history"]
    assert rec["model"]["config"]["Cs"] == cs and rec["model"]["config"]["epochs"] == len(cs)   # sorted ascending
    valid = [h["valid"] for h in history]
    assert len(valid) == len(cs) and len(set(valid)) > 1             # the Cs really differ on validation
    best = int(np.argmax(valid))                                     # first maximum = smallest C on ties
    details = rec["model"]["details"]
    assert rec["training"]["selection"]["epoch"] == best + 1
    assert details["C"] == cs[best] and details["Cs"] == cs
    assert rec["metrics"]["valid"]["accuracy"] == pytest.approx(valid[best], abs=1e-6)
    assert details["features"]["spec"] == "tfidf" and details["input"]["sparse"] is True
    assert rec["model"]["num_parameters"] == 6 * (details["features"]["dim"] + 1)


@pytest.mark.parametrize("cls,cfg", [(LogReg, LinearConfig), (SGC, SGCConfig)])
def test_linear_models_are_deterministic(cls, cfg):
    g, perm = homophilous(n=90)
    data = view(g, perm[:30], perm[30:60], perm[60:])
    a, la = scores_after(cls(cfg(features="noisy", Cs=[0.1, 1.0])), data, 2, seed=0)
    b, lb = scores_after(cls(cfg(features="noisy", Cs=[0.1, 1.0])), data, 2, seed=7)   # the seed is unused
    assert torch.equal(a, b) and la == lb
    c, _ = scores_after(cls(cfg(features="noisy", Cs=[0.1, 100.0])), data, 2)
    assert not torch.equal(a, c)                                     # the fitted C matters


def test_state_dict_round_trip_restores_the_selected_C():
    g, perm = homophilous(n=90)
    data = view(g, perm[:30], perm[30:60], perm[60:])
    m = LogReg(LinearConfig(features="noisy", Cs=[0.01, 1.0, 100.0]))
    m.setup(data, 0)
    m.train_epoch(2)
    state, want = m.state_dict(), m.predict(data.test_nodes)
    m.train_epoch(3)
    assert m.describe()["C"] == 100.0 and not torch.equal(m.predict(data.test_nodes), want)
    m.load_state_dict(state)
    assert m.describe()["C"] == 1.0 and torch.equal(m.predict(data.test_nodes), want)
    assert m.num_parameters() == 3 * 16 + 3


def test_linear_config_grid_rules():
    assert build_config(LinearConfig, "t", {}, {"Cs": [10, 0.1], "epochs": 99}, "logreg").epochs == 2
    assert build_config(LinearConfig, "t", {}, {"Cs": [10, 0.1]}, "logreg").Cs == [0.1, 10.0]
    for bad, msg in (([], "non-empty list"), ([1, -1], "numbers > 0"), ([1, 1], "twice"), (["x"], "numbers")):
        with pytest.raises(ConfigError, match=msg):
            build_config(LinearConfig, "t", {}, {"Cs": bad}, "logreg")
    with pytest.raises(ConfigError, match="hops must be an integer >= 0"):
        build_config(SGCConfig, "t", {}, {"hops": -1}, "sgc")


@pytest.mark.parametrize("cls,cfg", [(LogReg, LinearConfig), (SGC, SGCConfig)])
def test_linear_models_refuse_zero_shot_splits(cls, cfg):
    g, perm = homophilous(n=80, classes=4)
    train = perm[:40][g.labels[perm[:40]] < 2]
    rest = perm[40:][g.labels[perm[40:]] >= 2]
    data = view(g, train, rest[:10], rest[10:], train_classes=(0, 1), candidates=(2, 3))
    m = cls(cfg(features="noisy"))
    with pytest.raises(ConfigError, match=rf"{cls.name}: candidate classes \[2, 3\] \(hat, scarf\) never occur in "
                                          r"training .* cannot score them"):
        m.setup(data, 0)


def test_two_classes_and_classes_without_training_nodes():
    g, perm = homophilous(n=60, classes=3)
    train = perm[:30][g.labels[perm[:30]] < 2]                       # class 2 has no training node
    data = view(g, train, perm[30:45], perm[45:], train_classes=(0, 1, 2), candidates=(0, 1, 2))
    s, _ = scores_after(LogReg(LinearConfig(features="noisy", Cs=[1.0])), data, 1)
    assert s.shape == (15, 3) and bool((s[:, 2] == -1e9).all())
    assert torch.allclose(s[:, :2].exp().sum(1), torch.ones(15), atol=1e-5)   # binary fit, as probabilities
    assert set(s.argmax(1).tolist()) <= {0, 1}


# --------------------------------------------------------------------------- SGC propagation
def test_sgc_design_matrix_is_own_then_neighbour_means():
    """Path 0-1-2 plus node 3 isolated; 0-1 linked by two edge types and a self-loop on 2: merged / dropped."""
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [5.0, 5.0]])
    ei = torch.tensor([[0, 1, 0, 1, 1, 2, 2], [1, 0, 1, 0, 2, 1, 2]])
    et = torch.tensor([0, 0, 2, 2, 1, 1, 0])
    from mmbench.api import FeatureSet

    g = MultimodalGraph(num_nodes=4, texts=(None,) * 4, images=(None,) * 4, kinds=("node",) * 4, edge_index=ei,
                        edge_type=et, labels=torch.tensor([0, 1, 0, 1]), class_names=("a", "b"),
                        features={"f": FeatureSet(values=x, present=torch.ones(4, dtype=torch.bool))})
    data = view(g, torch.tensor([0, 1, 2, 3]), torch.tensor([0]), torch.tensor([1]))
    m = SGC(SGCConfig(features="f", hops=2, Cs=[1.0]))
    m.setup(data, 0)
    p1 = torch.tensor([[0.0, 1.0], [1.5, 1.0], [0.0, 1.0], [0.0, 0.0]])     # mean over merged neighbours
    p2 = torch.tensor([[1.5, 1.0], [0.0, 1.0], [1.5, 1.0], [0.0, 0.0]])     # the mean of those means
    assert torch.allclose(torch.from_numpy(np.asarray(m.x)), torch.cat([x, p1, p2], 1))
    prop = m.describe()["propagation"]
    assert prop["undirected_edges"] == 2 and prop["isolated_nodes"] == 1
    assert prop["blocks"] == {"hop0": [0, 2], "hop1": [2, 4], "hop2": [4, 6]}
    m0 = SGC(SGCConfig(features="f", hops=0, Cs=[1.0]))
    m0.setup(data, 0)
    assert torch.equal(torch.from_numpy(np.asarray(m0.x)), x)


def test_sgc_beats_logreg_on_a_homophilous_graph():
    g, perm = homophilous()
    data = view(g, perm[:60], perm[60:90], perm[90:])
    labels = g.labels[data.test_nodes]
    acc = {}
    for cls, cfg in ((LogReg, LinearConfig), (SGC, SGCConfig)):
        s, _ = scores_after(cls(cfg(features="noisy", Cs=[1.0])), data, 1)
        acc[cls.__name__] = float((s.argmax(1) == labels).float().mean())
    assert acc["LogReg"] < 0.8 and acc["SGC"] > acc["LogReg"] + 0.15, acc
