"""Node-classification baselines: mlp / gcn / sage / gat (baselines/gnn.py) and lm-cls (baselines/lm_cls.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import copy_fixture, write_card

from baselines.gnn import GAT, GCN, MLP, GATConfig, GNNConfig, GraphSAGE
from baselines.lm_cls import LMClassifier, LMClsConfig, build_prompts, label_log_likelihoods
from mmbench.api import ClassificationTrainingData, FeatureSet
from mmbench.backbones import causal_lm, text_model_path
from mmbench.cli import main
from mmbench.config import build_config
from mmbench.data.graph import MultimodalGraph
from mmbench.errors import ConfigError
from mmbench.jobs.classification import predict_classes
from mmbench.progress import Progress

GNNS = {"mlp": MLP, "gcn": GCN, "sage": GraphSAGE, "gat": GAT}


# --------------------------------------------------------------------------- hand-made graphs
def homophilous(n=240, classes=3, dim=16, noise=2.0, degree=6, homophily=0.9, seed=0, texts=None):
    """Node features = class centroid + heavy noise; 90% of edges join nodes of the same class.
    Returns the graph (all labels) and a random node order for splits."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(classes, dim, generator=g)[y] + noise * torch.randn(n, dim, generator=g)
    src, dst = [], []
    for v in range(n):
        for _ in range(degree // 2):
            pool = ((y == y[v]) if torch.rand(1, generator=g).item() < homophily else (y != y[v])).nonzero().flatten()
            u = int(pool[torch.randint(len(pool), (1,), generator=g)])
            if u != v:
                src += [v, u]
                dst += [u, v]
    ei = torch.tensor([src, dst])
    graph = MultimodalGraph(num_nodes=n, texts=tuple(texts) if texts else (None,) * n, images=(None,) * n,
                            kinds=("node",) * n, edge_index=ei, edge_type=torch.zeros(ei.shape[1], dtype=torch.long),
                            labels=y, class_names=("shoe", "bag", "hat", "scarf")[:classes],
                            features={"noisy": FeatureSet(values=x, present=torch.ones(n, dtype=torch.bool))})
    return graph, torch.randperm(n, generator=g)


def view(graph, train, valid, test, train_classes=None, candidates=None) -> ClassificationTrainingData:
    all_classes = tuple(range(len(graph.class_names)))
    return ClassificationTrainingData(task="hand", graph=graph.without_answers(train), train_nodes=train,
                                      valid_nodes=valid, test_nodes=test, class_names=graph.class_names,
                                      train_classes=train_classes or all_classes,
                                      candidate_classes=candidates or all_classes)


def scores_after(model, data, epochs, seed=0, nodes=None):
    model.setup(data, seed)
    losses = [model.train_epoch(e) for e in range(1, epochs + 1)]
    model.begin_scoring()
    try:
        with torch.no_grad():
            s = model.predict(data.test_nodes if nodes is None else nodes)
    finally:
        model.end_scoring()
    return s, losses


def accuracy(model, graph, data, epochs=100) -> float:
    s, _ = scores_after(model, data, epochs)
    return float((s.argmax(1) == graph.labels[data.test_nodes]).float().mean())


# --------------------------------------------------------------------------- GNNs
@pytest.mark.parametrize("name", sorted(GNNS))
def test_gnn_trains_predicts_and_is_deterministic(name):
    g, perm = homophilous(n=60)
    data = view(g, perm[:15], perm[15:30], perm[30:])
    cfg = GATConfig if name == "gat" else GNNConfig
    a, losses = scores_after(GNNS[name](cfg(features="noisy")), data, 20)
    assert a.shape == (30, 3) and a.dtype == torch.float32 and bool(torch.isfinite(a).all())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    b, losses_b = scores_after(GNNS[name](cfg(features="noisy")), data, 20)
    assert torch.equal(a, b) and losses == losses_b
    torch.manual_seed(123)  # global RNG use elsewhere does not leak into training
    c, _ = scores_after(GNNS[name](cfg(features="noisy")), data, 20, seed=1)
    assert not torch.equal(a, c)


def test_gnn_state_round_trip_and_describe():
    g, perm = homophilous(n=60)
    data = view(g, perm[:15], perm[15:30], perm[30:])
    m = GCN(GNNConfig(features="noisy"))
    before, _ = scores_after(m, data, 5)
    state = m.state_dict()
    for e in range(6, 16):
        m.train_epoch(e)
    m.load_state_dict(state)
    m.begin_scoring()
    assert torch.equal(m.predict(data.test_nodes), before)
    m.end_scoring()
    d = m.describe()
    pairs = torch.unique(g.edge_index[0] * g.num_nodes + g.edge_index[1]).numel()   # the generator repeats some
    assert d["features"]["spec"] == "noisy" and d["zero_shot"] is None and d["edges"] == pairs
    assert d["edge_types"] == f"ignored, parallel edges merged: {g.edge_index.shape[1] - pairs}"
    assert m.num_parameters() == (16 * 128 + 128) + (128 * 3 + 3)


def test_graph_models_beat_mlp_on_a_homophilous_graph():
    """Features alone are noisy (MLP ~ 0.6); averaging over agreeing neighbours recovers the class."""
    g, perm = homophilous()
    data = view(g, perm[:30], perm[30:60], perm[60:])
    mlp = accuracy(MLP(GNNConfig(features="noisy")), g, data)
    gcn = accuracy(GCN(GNNConfig(features="noisy")), g, data)
    sage = accuracy(GraphSAGE(GNNConfig(features="noisy")), g, data)
    assert 0.45 < mlp < 0.8
    assert gcn > 0.9 and gcn > mlp + 0.2
    assert sage > mlp + 0.1


def test_loss_is_over_training_classes_only():
    """A class outside train_classes gets no gradient from the loss: its output weights stay as initialised."""
    g, perm = homophilous(n=60)
    data = view(g, perm[:15], perm[15:30], perm[30:], train_classes=(0, 1), candidates=(0, 1))
    m = MLP(GNNConfig(features="noisy", weight_decay=0.0))
    m.setup(data, 0)
    out = m.module.convs[1]
    w, b = out.weight.detach().clone(), out.bias.detach().clone()
    for e in range(1, 6):
        m.train_epoch(e)
    assert torch.equal(out.weight[2], w[2]) and float(out.bias[2]) == float(b[2])
    assert not torch.allclose(out.weight[0], w[0], atol=0.01)
    # training nodes of a class outside train_classes are left out of the loss
    assert m.train_nodes.tolist() == [v for v in perm[:15].tolist() if g.labels[v] < 2]


def test_zero_shot_label_similarity():
    g, perm = homophilous(n=80, classes=4)
    train = perm[:40][g.labels[perm[:40]] < 2]
    rest = perm[40:][g.labels[perm[40:]] >= 2]
    data = view(g, train, rest[:10], rest[10:], train_classes=(0, 1), candidates=(2, 3))
    with pytest.raises(ConfigError, match=r"candidate classes \[2, 3\] never occur in training"):
        GCN(GNNConfig(features="noisy", zero_shot="none")).setup(data, 0)
    m = GCN(GNNConfig(features="noisy"))
    s, losses = scores_after(m, data, 10)
    assert m.class_emb.shape == (4, 384) and m.module.convs[-1].out_channels == 384
    assert s.shape == (len(data.test_nodes), 4) and bool(torch.isfinite(s).all())
    assert float(s.abs().max()) <= 1 / 0.1 + 1e-4  # cosine / temperature
    assert losses[-1] < losses[0]
    assert m.describe()["zero_shot"] == "label-similarity" and m.describe()["unseen_classes"] == [2, 3]
    pred = predict_classes(m, data.test_nodes, 4, (2, 3), "test", 7, Progress(quiet=True))
    assert len(pred) == len(data.test_nodes) and set(pred.tolist()) <= {2, 3}
    # the argmax over all classes would be a seen class for most nodes: the restriction matters
    assert set(s.argmax(1).tolist()) & {0, 1}


# --------------------------------------------------------------------------- lm-cls
@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> str:
    """A 2-layer, 64-wide random LLaMA with MiniLM's WordPiece tokenizer, saved as a local folder.

    (``tiny-llama`` needs SmolLM2's tokenizer, which a fresh cache builds by converting the 135M GGUF:
    about 40 s, too slow for every test session; a local folder goes through the same ``causal_lm`` path.)
    """
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(text_model_path("minilm"))
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id,
                      eos_token_id=tok.sep_token_id)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg)
    path = tmp_path_factory.mktemp("tiny-lm")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


WORDS = ["red leather boot", "canvas tote", "wool hat", "silk scarf"]


def text_graph(n=24):
    return homophilous(n=n, classes=3, texts=[f"item {i}: {WORDS[i % 3]}" for i in range(n)])


def test_build_prompts():
    texts = ("x" * 30, "first  neighbour\nwith newline", None, "third", "fourth", "fifth", "sixth")
    src = [1, 0, 2, 3, 3, 4, 5, 6, 0]
    dst = [0, 1, 0, 0, 0, 0, 0, 0, 0]   # node 0 hears 1, 0 (self), 2 (no text), 3 twice, 4, 5, 6
    g = MultimodalGraph(num_nodes=7, texts=texts, images=(None,) * 7, kinds=("node",) * 7,
                        edge_index=torch.tensor([src, dst]), edge_type=torch.zeros(9, dtype=torch.long))
    [p0, p1, p2] = build_prompts(g, [0, 1, 2], "T={text} N={neighbors}", max_neighbors=3, max_chars=12)
    assert p0 == "T=xxxxxxxxxxxx N=first neighb | third | fourth"
    assert p1 == "T=first neighb N=xxxxxxxxxxxx"
    assert p2 == "T=(no text) N=(none)"


def test_lm_cls_head_mode(tiny_lm, env):
    g, perm = text_graph()
    data = view(g, perm[:12], perm[12:16], perm[16:])
    cfg = LMClsConfig(lm=tiny_lm, lm_batch_size=5)
    m = LMClassifier(cfg)
    a, losses = scores_after(m, data, 3)
    assert a.shape == (8, 3) and bool(torch.isfinite(a).all()) and losses[-1] < losses[0]
    assert m.reps.shape == (24, 64) and torch.allclose(m.reps.mean(0), torch.zeros(64), atol=1e-5)
    assert m.num_parameters() == 64 * 3 + 3 + sum(p.numel() for p in causal_lm(tiny_lm)[0].parameters())
    assert m.describe()["example_prompt"].startswith(f"Node: item {int(perm[0])}: ")
    assert [p.name for p in (env.cache / "lm-prompt-reps").glob("*.pt")]  # representations cached on disk
    b, losses_b = scores_after(LMClassifier(cfg), data, 3)
    assert torch.equal(a, b) and losses == losses_b
    # a node outside train/valid/test is encoded on demand, standardised the same way
    m.begin_scoring()
    assert m.predict(torch.tensor([int(perm[0])])).shape == (1, 3)
    m.end_scoring()
    zs = view(g, perm[:12][g.labels[perm[:12]] == 0], perm[12:16], perm[16:], train_classes=(0,), candidates=(1, 2))
    with pytest.raises(ConfigError, match="Use --set mode=likelihood"):
        LMClassifier(cfg).setup(zs, 0)


def test_lm_cls_likelihood_mode_zero_shot(tiny_lm):
    cfg = build_config(LMClsConfig, "hand", {}, {"mode": "likelihood", "lm": tiny_lm, "epochs": 7,
                                                 "lm_batch_size": 3}, "lm-cls")
    assert cfg.epochs == 0  # nothing to train: the harness skips training and selection
    g, perm = text_graph(12)
    train = perm[:6][g.labels[perm[:6]] == 0]
    data = view(g, train, perm[6:8], perm[8:], train_classes=(0,), candidates=(1, 2))
    m = LMClassifier(cfg)
    m.setup(data, 0)
    assert m.module is None and m.state_dict() == {}
    s = m.predict(data.test_nodes)
    assert s.shape == (4, 3) and bool(torch.isfinite(s).all()) and bool((s[:, 0] == -1e9).all())
    # the batched, cache-sharing scores equal a plain forward pass per (prompt, label)
    model, tok = causal_lm(tiny_lm)
    prompts = build_prompts(data.graph, data.test_nodes.tolist(), cfg.template, cfg.max_neighbors, cfg.max_chars)
    with torch.no_grad():
        for i, p in enumerate(prompts):
            pid = tok(p)["input_ids"]
            for j, name in ((1, " bag"), (2, " hat")):
                lid = tok(name, add_special_tokens=False)["input_ids"]
                lp = F.log_softmax(model(torch.tensor([pid + lid])).logits[0], -1)
                want = sum(float(lp[len(pid) - 1 + k, t]) for k, t in enumerate(lid)) / len(lid)
                assert abs(float(s[i, j]) - want) < 1e-4
    assert torch.allclose(label_log_likelihoods(model, tok, prompts, [" bag", " hat"], 512, 16), s[:, 1:], atol=1e-5)
    pred = predict_classes(m, data.test_nodes, 3, (1, 2), "test", 2, Progress(quiet=True))
    assert set(pred.tolist()) <= {1, 2}


def test_lm_cls_calibration_subtracts_the_reference_prompts_mean_scores(tiny_lm):
    from mmbench.models import lm_decode

    g, perm = text_graph(12)
    train = perm[:6][g.labels[perm[:6]] == 0]
    data = view(g, train, perm[6:8], perm[8:], train_classes=(0,), candidates=(1, 2))

    def scores(**kw):
        cfg = build_config(LMClsConfig, "hand", {}, {"mode": "likelihood", "lm": tiny_lm, **kw}, "lm-cls")
        m = LMClassifier(cfg)
        m.setup(data, 0)
        return m, m.predict(data.test_nodes)[:, 1:]

    m, raw = scores()
    model, tok = causal_lm(tiny_lm)
    labels = [" bag", " hat"]
    # evenly spaced over the sorted nodes, all of them when there are few
    assert lm_decode.calibration_subset([9, 1, 5, 3], 2) == [1, 5] and lm_decode.calibration_subset([2, 1], 5) == [1, 2]
    ref = lm_decode.calibration_subset(train.tolist(), 2)
    train_ll = label_log_likelihoods(model, tok, m._prompts(ref), labels, 512, 16)
    _, domain = scores(calibration="domain", calibration_nodes=2)
    assert torch.allclose(domain, raw - train_ll.mean(0), atol=1e-5)
    free = [LMClsConfig.template.format(text=x, neighbors=x) for x in lm_decode.CONTENT_FREE]
    _, cf = scores(calibration="content-free")
    assert torch.allclose(cf, raw - label_log_likelihoods(model, tok, free, labels, 512, 16).mean(0), atol=1e-5)
    assert not torch.allclose(cf, raw)
    with pytest.raises(ConfigError, match="calibration="):
        scores(calibration="platt")
    with pytest.raises(ConfigError, match="calibration_nodes"):
        scores(calibration="domain", calibration_nodes=0)


# --------------------------------------------------------------------------- end to end through the CLI
def byo_card(tmp_path: Path, zero_shot: bool = False) -> Path:
    copy_fixture("byo-graph", tmp_path / "graphs" / "byo")
    raw = {"name": "byo-cls", "version": 1, "family": "classification", "description": "BYO example",
           "dataset": {"loader": "folder", "path": "../graphs/byo"}, "splits": ["train", "valid", "test"],
           "metrics": ["accuracy", "macro_f1"], "main_metric": "accuracy",
           "protocol": {"selection_metric": "accuracy"}}
    if zero_shot:
        raw["name"] = "byo-zs"
        raw["protocol"]["zero_shot"] = {"seen_classes": ["shoe"], "unseen_classes": ["bag"]}
    return write_card(tmp_path / "cards", raw)


def test_eval_gcn_on_the_byo_folder(env, tmp_path):
    card = byo_card(tmp_path)
    assert main(["eval", "--model", "gcn", "--task", str(card), "--set", "epochs=5", "--set", "eval_every=1",
                 "--quiet"]) == 0
    [path] = sorted(env.results.rglob("*.json"))
    rec = json.loads(path.read_text())
    assert rec["model"]["name"] == "gcn" and rec["model"]["config"]["features"] == "text+image"
    test = rec["metrics"]["test"]
    assert set(test) >= {"accuracy", "macro_f1"} and 0.0 <= test["accuracy"] <= 1.0
    assert test["accuracy"] in (0.0, 1 / 3, 2 / 3, 1.0)  # three test nodes
    lo, hi = rec["intervals"]["accuracy"]
    assert lo <= test["accuracy"] <= hi
    assert len(rec["training"]["history"]) == 5


def test_eval_lm_likelihood_on_a_zero_shot_byo_card(env, tmp_path, tiny_lm):
    card = byo_card(tmp_path, zero_shot=True)
    assert main(["eval", "--model", "lm-cls", "--task", str(card), "--set", "mode=likelihood",
                 "--set", f"lm={tiny_lm}", "--quiet"]) == 0
    [path] = sorted(env.results.rglob("*.json"))
    rec = json.loads(path.read_text())
    assert rec["model"]["config"]["epochs"] == 0 and rec["training"]["history"] == []
    # one unseen candidate class: every prediction is "bag", which is every test label
    assert rec["metrics"]["test"]["accuracy"] == 1.0
