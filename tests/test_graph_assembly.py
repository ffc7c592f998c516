"""k-hop neighbourhoods and sample assembly (``mmbench.data.subgraph``) against the previous PyG-based code,
WikiWeb2M hops against the previous dict BFS, and the text/image split of samples (``modality_views``)."""

from __future__ import annotations

import collections
import copy
import dataclasses
import pickle

import numpy as np
import pytest
import torch

from mmbench.api import GraphSample, SampleNode
from mmbench.data import wikiweb as ww
from mmbench.data.graph import MultimodalGraph
from mmbench.data.subgraph import Adjacency, bfs, bfs_edge_list, modality_views


# --------------------------------------------------------------------------- the previous implementation
def reference_k_hop(g: MultimodalGraph, node: int, k: int):
    """What ``MultimodalGraph.k_hop`` did before ``mmbench.data.subgraph``: PyG on the whole graph per call."""
    from torch_geometric.utils import k_hop_subgraph, to_undirected

    ei = to_undirected(g.edge_index, num_nodes=g.num_nodes) if g.edge_index.numel() else g.edge_index
    subset, _, _, _ = k_hop_subgraph(node, k, ei, relabel_nodes=False, num_nodes=g.num_nodes)
    subset = torch.cat([torch.tensor([node]), subset[subset != node]])
    n = int(max(int(subset.max()), int(ei.max()) if ei.numel() else 0)) + 1
    dist = torch.full((n,), k + 1, dtype=torch.long)
    dist[node] = 0
    frontier = torch.zeros(n, dtype=torch.bool)
    frontier[node] = True
    for h in range(1, k + 1):
        nxt = torch.zeros(n, dtype=torch.bool)
        nxt[ei[1][frontier[ei[0]]]] = True
        nxt &= dist > h
        dist[nxt] = h
        frontier = nxt
    hops = dist[subset]
    order = torch.argsort(hops * (g.num_nodes + 1) + torch.arange(len(subset)), stable=True)
    subset, hops = subset[order], hops[order]
    pos = torch.full((g.num_nodes,), -1, dtype=torch.long)
    pos[subset] = torch.arange(len(subset))
    keep = (pos[g.edge_index[0]] >= 0) & (pos[g.edge_index[1]] >= 0)
    return subset, pos[g.edge_index[:, keep]], g.edge_type[keep], hops


def reference_sample(g: MultimodalGraph, node: int, k: int, max_nodes: int, hide_target_text: bool = False):
    subset, ei, et, hops = reference_k_hop(g, node, k)
    if len(subset) > max_nodes:
        subset, hops = subset[:max_nodes], hops[:max_nodes]
        keep = (ei[0] < max_nodes) & (ei[1] < max_nodes)
        ei, et = ei[:, keep], et[keep]
    nodes = tuple(SampleNode(text=None if (hide_target_text and i == 0) else g.texts[v], image=g.images[v],
                             kind=g.kinds[v], hop=int(h), node=int(v))
                  for i, (v, h) in enumerate(zip(subset.tolist(), hops.tolist(), strict=True)))
    return GraphSample(id=str(node), nodes=nodes, edge_index=ei, edge_type=et, edge_type_names=g.edge_type_names)


def random_graph(seed: int, n: int, m: int, isolated: int = 0) -> MultimodalGraph:
    """Random one-way edges plus parallel edges, both directions of some edges and self loops; the last
    ``isolated`` nodes have no edge."""
    gen = torch.Generator().manual_seed(seed)
    linked = n - isolated
    ei = torch.randint(0, linked, (2, m), generator=gen)
    if not m:
        return _graph(n, ei, torch.zeros(0, dtype=torch.long))
    extra = ei[:, torch.randint(0, m, (m // 5,), generator=gen)]  # parallel copies
    back = ei[:, torch.randint(0, m, (m // 5,), generator=gen)].flip(0)  # the reverse of some edges
    loops = torch.randint(0, linked, (m // 10,), generator=gen).repeat(2, 1)
    ei = torch.cat([ei, extra, back, loops], 1)
    ei = ei[:, torch.randperm(ei.shape[1], generator=gen)]
    return _graph(n, ei, torch.randint(0, 3, (ei.shape[1],), generator=gen))


def _graph(n: int, ei: torch.Tensor, et: torch.Tensor) -> MultimodalGraph:
    return MultimodalGraph(num_nodes=n, texts=tuple(f"t{i}" if i % 3 else None for i in range(n)),
                           images=tuple(f"i{i}.jpg" if i % 2 else None for i in range(n)),
                           kinds=tuple("node" for _ in range(n)), edge_index=ei, edge_type=et)


def _assert_same(a: tuple, b: tuple) -> None:
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y)


GRAPHS = [(0, 30, 40, 3), (1, 60, 200, 5), (2, 200, 300, 10), (3, 12, 0, 0), (4, 50, 25, 20)]


@pytest.mark.parametrize(("seed", "n", "m", "isolated"), GRAPHS)
def test_k_hop_equals_the_previous_implementation(seed, n, m, isolated):
    g = random_graph(seed, n, m, isolated)
    for node in range(n):
        for k in (0, 1, 2, 3):
            _assert_same(g.k_hop(node, k), reference_k_hop(g, node, k))


@pytest.mark.parametrize(("seed", "n", "m", "isolated"), GRAPHS)
def test_sample_equals_the_previous_implementation(seed, n, m, isolated):
    g = random_graph(seed, n, m, isolated)
    for node in range(n):
        for k, max_nodes in ((1, 16), (2, 5), (2, 16), (3, 1), (3, 40), (2, 0)):
            hide = bool(node % 2)
            new = g.sample(node, k, max_nodes, hide_target_text=hide)
            old = reference_sample(g, node, k, max_nodes, hide)
            assert new.id == old.id and new.nodes == old.nodes and new.edge_type_names == old.edge_type_names
            _assert_same((new.edge_index, new.edge_type), (old.edge_index, old.edge_type))
            assert [x.node for x in new.nodes] == g.k_hop(node, k)[0][:max_nodes].tolist()


def test_a_hand_built_neighbourhood():
    # 0 -> 1, 2 -> 0 (one-way), 1 -> 3 twice (parallel), 3 -> 3 (loop), 4 -> 1, 5 isolated
    ei = torch.tensor([[0, 2, 1, 3, 1, 4], [1, 0, 3, 3, 3, 1]])
    g = MultimodalGraph(num_nodes=6, texts=("a", "b", "c", "d", "e", "f"), images=(None,) * 6, kinds=("n",) * 6,
                        edge_index=ei, edge_type=torch.tensor([0, 1, 2, 0, 1, 2]))
    subset, sub_ei, et, hops = g.k_hop(1, 2)
    assert subset.tolist() == [1, 0, 3, 4, 2] and hops.tolist() == [0, 1, 1, 1, 2]
    # stored order, relabelled: (0,1) (2,0) (1,3) (3,3) (1,3) (4,1)
    assert sub_ei.tolist() == [[1, 4, 0, 2, 0, 3], [0, 1, 2, 2, 2, 0]] and et.tolist() == [0, 1, 2, 0, 1, 2]
    assert g.k_hop(5, 3)[0].tolist() == [5] and g.k_hop(5, 3)[1].shape == (2, 0)
    s = g.sample(1, 2, 3)
    assert [x.node for x in s.nodes] == [1, 0, 3] and s.edge_index.tolist() == [[1, 0, 2, 0], [0, 2, 2, 2]]


def test_adjacency_is_cached_pickles_without_it_and_copies_rebuild_it():
    g = random_graph(0, 30, 40)
    adj = g.adjacency
    assert g.adjacency is adj and "adjacency" in g.__dict__
    for other in (pickle.loads(pickle.dumps(g)), copy.deepcopy(g)):
        assert "adjacency" not in other.__dict__
        _assert_same(other.k_hop(3, 2), g.k_hop(3, 2))
        assert other.adjacency is not adj
    assert len(pickle.dumps(g)) == len(pickle.dumps(dataclasses.replace(g)))
    free = g.without_answers(torch.tensor([0, 1]))
    assert "adjacency" not in free.__dict__ and free.adjacency is not adj
    _assert_same(free.k_hop(7, 3), g.k_hop(7, 3))


def test_bfs_limits():
    adj = Adjacency.from_edge_index(torch.tensor([[0, 0, 1, 2, 3], [1, 2, 3, 3, 4]]), 6)  # a diamond and a tail
    nodes, hops = bfs(adj, 0)
    assert nodes.tolist() == [0, 1, 2, 3, 4] and hops.tolist() == [0, 1, 1, 2, 3]
    assert bfs(adj, 4, max_hops=1)[0].tolist() == [4, 3]
    assert bfs(adj, 0, max_nodes=2)[0].tolist() == [0, 1, 2]  # whole levels, so a prefix of the full order
    assert bfs(adj, 5)[0].tolist() == [5]
    assert bfs_edge_list(np.array([[100, 7], [7, 55]]), 55) == {55: 0, 7: 1, 100: 2}
    assert bfs_edge_list(np.zeros((2, 0)), 9) == {9: 0}


# --------------------------------------------------------------------------- WikiWeb2M hops
def _old_wikiweb_hops(page, source):
    adj = collections.defaultdict(list)
    for u, v, _ in page.edges:
        adj[u].append(v)
    dist, frontier = {source: 0}, [source]
    while frontier:
        nxt = []
        for u in frontier:
            for v in adj[u]:
                if v not in dist:
                    dist[v] = dist[u] + 1
                    nxt.append(v)
        frontier = nxt
    return dist


def test_wikiweb_hops_are_unchanged(tmp_path):
    def section(i, parent, images=()):
        return ww.Section(title=f"s{i}", depth=1, heading_level=2, parent=parent, first_sentence=f"First {i}.",
                          rest=f"Rest {i}.", sample=True,
                          images=[ww.SectionImage(url=f"u{i}", caption=f"cap {i}", status="found", file=f)
                                  for f in images])

    for name in ("0_0_0.jpg", "0_2_0.jpg", "0_5_0.jpg", "1_1_0.jpg"):
        (tmp_path / name).write_bytes(b"x")
    pages = {"train": [ww.Page(0, "u", "A", "about a", "train",
                               [section(0, -1, ["0_0_0.jpg"]), section(1, 0), section(2, 0, ["0_2_0.jpg"]),
                                section(3, 1), section(4, 3), section(5, 0, ["0_5_0.jpg"]), section(6, 2)])],
             "valid": [ww.Page(1, "v", "B", "about b", "valid", [section(0, -1), section(1, 0, ["1_1_0.jpg"])])],
             "test": [ww.Page(2, "w", "C", "about c", "test", [section(0, 0)])]}
    task = ww.build_task_data("wikiweb-gen", pages, tmp_path, dict(ww.DEFAULTS))
    assembler = task.assemble_fn
    checked = 0
    for g, page in enumerate(assembler.pages):
        for sn in page.sections:
            old = _old_wikiweb_hops(page, sn)
            assert ww.Assembler._hops(page, sn) == old
            sample = task.assemble(sn)
            assert [x.hop for x in sample.nodes] == [old.get(x.node, -1) for x in sample.nodes]
            assert all(int(task.graph.groups[x.node]) == g for x in sample.nodes) and sample.nodes[0].node == sn
            checked += 1
    assert checked == 10


# --------------------------------------------------------------------------- modality views
def _sample(nodes, edges, types, names=("text-text", "image-image", "text-image")):
    return GraphSample(id="s", nodes=tuple(SampleNode(text=t, image=i, hop=h) for t, i, h in nodes),
                       edge_index=torch.tensor(edges, dtype=torch.long).reshape(-1, 2).T.contiguous(),
                       edge_type=torch.tensor(types, dtype=torch.long), edge_type_names=names)


def _rows(t):
    return [tuple(r) for r in t.T.tolist()]


# 0: text+image, 1: text only, 2: image only, 3: neither, 4: empty text + image, 5: text+image
TYPED_EXAMPLE = dict(
    nodes=[("a", "a.jpg", 0), ("b", None, 1), (None, "c.jpg", 1), (None, None, 2), ("", "e.jpg", 2),
           ("f", "f.jpg", 1)],
    edges=[(0, 1), (1, 0), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1), (0, 3), (1, 1), (4, 2), (0, 4), (4, 0),
           (5, 0), (0, 0)],
    types=[0, 0, 0, 1, 1, 2, 2, 0, 0, 1, 2, 2, 2, 2])


def test_modality_views_typed_edges():
    v = modality_views(_sample(**TYPED_EXAMPLE))
    assert v.text_nodes.tolist() == [0, 1, 5] and v.image_nodes.tolist() == [0, 2, 4, 5]
    assert v.text_hops.tolist() == [0, 1, 1] and v.image_hops.tolist() == [0, 1, 2, 1]
    # text-text: 0->1, 1->0 (duplicate dropped); 0->3 has no text at 3; 1->1 is a loop
    assert _rows(v.text_edges) == [(0, 1), (1, 0)]
    # image-image: 0<->2 and 4->2 one way, kept as stored
    assert _rows(v.image_edges) == [(0, 1), (1, 0), (2, 1)]
    # own pairs (0,0) (2,3); text-image 1-2 -> text(1)-image(2); 0-4 -> text(0)-image(4) (4 has no text);
    # 5-0 one way -> text(5)-image(0) and text(0)-image(5); the loop 0-0 repeats the own pair
    assert _rows(v.cross_edges) == [(0, 0), (0, 2), (0, 3), (1, 1), (2, 0), (2, 3)]
    for t in (v.text_edges, v.image_edges, v.cross_edges, v.text_nodes, v.text_hops):
        assert t.dtype == torch.long


def test_modality_views_single_edge_type_relates_whole_nodes():
    nodes = [("a", "a.jpg", 0), ("b", None, 1), (None, "c.jpg", 1), ("d", "d.jpg", 2)]
    edges = [(0, 1), (1, 0), (0, 2), (2, 0), (2, 3), (3, 2), (0, 0), (0, 1)]
    v = modality_views(_sample(nodes, edges, [0] * len(edges), names=("co-purchase",)))
    assert v.text_nodes.tolist() == [0, 1, 3] and v.image_nodes.tolist() == [0, 2, 3]
    assert _rows(v.text_edges) == [(0, 1), (1, 0)]  # node 2 has no text; the loop and the duplicate are dropped
    assert _rows(v.image_edges) == [(0, 1), (1, 0), (1, 2), (2, 1)]  # node 1 has no image
    assert _rows(v.cross_edges) == [(0, 0), (2, 2)]  # only each node's own two modalities


def test_modality_views_untyped_reads_every_edge_as_relating_the_whole_nodes():
    # the typed example's nodes and edges: with typed=False every edge links texts where both ends have text
    # and images where both have an image; only each node's own pair stays a cross edge
    v = modality_views(_sample(**TYPED_EXAMPLE), typed=False)
    assert v.text_nodes.tolist() == [0, 1, 5] and v.image_nodes.tolist() == [0, 2, 4, 5]
    assert _rows(v.text_edges) == [(0, 1), (1, 0), (2, 0)]            # + text(5) -> text(0) from 5-0
    assert _rows(v.image_edges) == [(0, 1), (0, 2), (1, 0), (2, 0), (2, 1), (3, 0)]  # + 0<->4, 5 -> 0
    assert _rows(v.cross_edges) == [(0, 0), (2, 3)]
    typed = modality_views(_sample(**TYPED_EXAMPLE))
    assert _rows(typed.image_edges) == [(0, 1), (1, 0), (2, 1)]       # the default is unchanged


def test_modality_views_other_names_mixed_with_the_defaults_and_empty_samples():
    nodes = [("a", "a.jpg", 0), ("b", "b.jpg", 1)]
    v = modality_views(_sample(nodes, [(0, 1), (1, 0)], [3, 2], names=("text-text", "image-image", "text-image",
                                                                       "cites")))
    assert _rows(v.text_edges) == [(0, 1)] and _rows(v.image_edges) == [(0, 1)]
    assert _rows(v.cross_edges) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    empty = modality_views(_sample([(None, None, 0)], [], []))
    assert empty.text_nodes.shape == (0,) and empty.image_nodes.shape == (0,)
    for t in (empty.text_edges, empty.image_edges, empty.cross_edges):
        assert t.shape == (2, 0) and t.dtype == torch.long


def test_modality_views_of_a_graph_sample():
    g = random_graph(5, 40, 80)
    names = ("text-text", "image-image", "text-image")
    for node in range(0, 40, 7):
        s = g.sample(node, 2, 16)
        v = modality_views(s)
        text = [i for i, x in enumerate(s.nodes) if x.text]
        image = [i for i, x in enumerate(s.nodes) if x.image]
        assert v.text_nodes.tolist() == text and v.image_nodes.tolist() == image
        want_tt, want_ii, want_x = set(), set(), {(text.index(i), image.index(i)) for i in set(text) & set(image)}
        for (a, b), t in zip(s.edge_index.T.tolist(), s.edge_type.tolist(), strict=True):
            name = names[t]
            if name == "text-text" and a in text and b in text and a != b:
                want_tt.add((text.index(a), text.index(b)))
            if name == "image-image" and a in image and b in image and a != b:
                want_ii.add((image.index(a), image.index(b)))
            if name == "text-image":
                for x, y in ((a, b), (b, a)):
                    if x in text and y in image:
                        want_x.add((text.index(x), image.index(y)))
        assert _rows(v.text_edges) == sorted(want_tt) and _rows(v.image_edges) == sorted(want_ii)
        assert _rows(v.cross_edges) == sorted(want_x)
