"""Edge types: rgcn keeps one relation per type; gcn/sage/gat merge parallel edges instead of counting them twice."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_classification_baselines import homophilous, scores_after, view

from baselines.gnn import GAT, GCN, RGCN, GATConfig, GNNConfig, GraphSAGE, RGCNConfig
from mmbench.api import FeatureSet
from mmbench.data.edges import dedupe_typed, merge_parallel
from mmbench.data.graph import MultimodalGraph
from mmbench.errors import ConfigError


def opposite_signals(n=300, classes=3, dim=16, informative=0.3, same=2, cross=4, seed=0):
    """Type ``same`` links nodes of one class, type ``cross`` nodes of different classes (twice as many);
    features carry the class for 30% of nodes only. Ignoring types, a node's neighbourhood is mostly other
    classes and near-uniform over them."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, dim, generator=g)
    cue = torch.rand(n, generator=g) < informative
    x[cue] += 2 * torch.randn(classes, dim, generator=g)[y[cue]]
    src, dst, typ = [], [], []
    for v in range(n):
        for t, k in ((0, same), (1, cross)):
            pool = ((y == y[v]) if t == 0 else (y != y[v])).nonzero().flatten()
            pool = pool[pool != v]
            for u in pool[torch.randint(len(pool), (k,), generator=g)].tolist():
                src += [v, u]
                dst += [u, v]
                typ += [t, t]
    graph = MultimodalGraph(num_nodes=n, texts=(None,) * n, images=(None,) * n, kinds=("node",) * n,
                            edge_index=torch.tensor([src, dst]), edge_type=torch.tensor(typ),
                            edge_type_names=("same", "cross"), labels=y, class_names=("a", "b", "c")[:classes],
                            features={"f": FeatureSet(values=x, present=torch.ones(n, dtype=torch.bool))})
    return graph, torch.randperm(n, generator=g)


def test_rgcn_separates_edge_types_that_gcn_mixes():
    g, perm = opposite_signals()
    data = view(g, perm[:100], perm[100:150], perm[150:])
    labels = g.labels[data.test_nodes]
    acc = {}
    for name, model in (("gcn", GCN(GNNConfig(features="f"))), ("rgcn", RGCN(RGCNConfig(features="f")))):
        s, _ = scores_after(model, data, 100)
        acc[name] = float((s.argmax(1) == labels).float().mean())
    assert acc["rgcn"] > 0.9 and acc["rgcn"] > acc["gcn"] + 0.3, acc
    d = model.describe()
    assert d["edge_types"] == "one relation per type: ['same', 'cross']"
    triples = set(zip(*g.edge_index.tolist(), g.edge_type.tolist(), strict=True))    # repeats drawn by chance go
    assert d["edge_counts"]["per_relation"] == {name: sum(t == k for *_, t in triples)
                                                for k, name in enumerate(g.edge_type_names)}
    assert d["edge_counts"]["repeats_merged"] == g.edge_index.shape[1] - len(triples)
    assert len(model.module.convs[0].weight) == 2          # one weight matrix per relation


def with_parallel_edges(seed=0):
    """A homophilous graph plus a second, differently typed copy of half of its rows (appended), and the
    merged graph computed independently: each (source, target) once, first stored row kept, in order."""
    g, perm = homophilous(n=90, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    again = torch.randperm(g.edge_index.shape[1], generator=gen)[: g.edge_index.shape[1] // 2].sort().values
    ei = torch.cat([g.edge_index, g.edge_index[:, again]], 1)
    et = torch.cat([g.edge_type, torch.full((len(again),), 2)])
    parallel = dataclasses.replace(g, edge_index=ei, edge_type=et)
    seen, keep = set(), []
    for i, (a, b) in enumerate(ei.t().tolist()):
        if (a, b) not in seen:
            seen.add((a, b))
            keep.append(i)
    merged = dataclasses.replace(g, edge_index=ei[:, keep], edge_type=torch.zeros(len(keep), dtype=torch.long))
    return parallel, merged, perm, ei.shape[1] - len(keep)


@pytest.mark.parametrize("cls,cfg", [(GCN, GNNConfig), (GraphSAGE, GNNConfig), (GAT, GATConfig)])
def test_parallel_edges_of_different_types_are_counted_once(cls, cfg):
    parallel, merged, perm, dropped = with_parallel_edges()
    assert dropped > parallel.edge_index.shape[1] // 4            # many pairs are linked by two types
    a_data = view(parallel, perm[:30], perm[30:60], perm[60:])
    b_data = view(merged, perm[:30], perm[30:60], perm[60:])
    a_model, b_model = cls(cfg(features="noisy")), cls(cfg(features="noisy"))
    a, la = scores_after(a_model, a_data, 10)
    b, lb = scores_after(b_model, b_data, 10)
    assert torch.equal(a, b) and la == lb                          # exactly the merged graph's model
    assert a_model.describe()["edge_types"] == f"ignored, parallel edges merged: {dropped}"
    assert a_model.describe()["edges"] == merged.edge_index.shape[1]


def test_double_counting_would_change_the_propagation():
    """The control for the test above: fed the rows as stored, GCNConv's normalisation differs."""
    from torch_geometric.nn import GCNConv

    parallel, merged, _, _ = with_parallel_edges()
    conv = GCNConv(16, 4)
    x = parallel.features["noisy"].values
    with torch.no_grad():
        raw, ours = conv(x, parallel.edge_index), conv(x, merge_parallel(parallel.edge_index, 90)[0])
        assert torch.allclose(ours, conv(x, merged.edge_index)) and not torch.allclose(raw, ours, atol=1e-3)


def test_merge_and_dedupe_keep_first_rows_in_order():
    ei = torch.tensor([[0, 2, 0, 1, 2, 0], [1, 0, 1, 0, 0, 1]])
    et = torch.tensor([0, 1, 2, 0, 1, 0])
    merged, dropped = merge_parallel(ei, 3)
    assert merged.tolist() == [[0, 2, 1], [1, 0, 0]] and dropped == 3
    typed, types, repeats = dedupe_typed(ei, et, 3, 3)
    assert typed.tolist() == [[0, 2, 0, 1], [1, 0, 1, 0]] and types.tolist() == [0, 1, 2, 0] and repeats == 2
    unchanged, none = merge_parallel(torch.tensor([[1, 0], [0, 1]]), 2)
    assert unchanged.tolist() == [[1, 0], [0, 1]] and none == 0


def test_rgcn_config_and_bases():
    parallel, _, perm, _ = with_parallel_edges()
    data = view(parallel, perm[:30], perm[30:60], perm[60:])
    with pytest.raises(ConfigError, match="num_bases must be >= 0"):
        RGCN(RGCNConfig(features="noisy", num_bases=-1)).setup(data, 0)
    m = RGCN(RGCNConfig(features="noisy", num_bases=2))
    s, losses = scores_after(m, data, 5)
    assert s.shape == (30, 3) and losses[-1] < losses[0]
    assert m.module.convs[0].comp.shape == (3, 2)                 # 3 declared relations over 2 bases
    d = m.describe()
    assert d["edge_types"] == "one relation per type: ['text-text', 'image-image', 'text-image']"
    assert d["edge_counts"]["per_relation"]["image-image"] == 0
