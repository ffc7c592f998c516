"""Neighbourhoods of a multimodal graph: one undirected CSR adjacency, one BFS, k-hop subgraphs, and the
split of an assembled sample into its text graph and its image graph.

Adjacency and search
--------------------
``Adjacency.from_edge_index`` builds, once per graph, an undirected CSR view of the stored directed edges:
edge ``e = (u, v)`` is listed under ``u`` (neighbour ``v``) and under ``v`` (neighbour ``u``), both entries
remembering ``e``. ``bfs`` follows it (so edges are followed in both directions) and returns the nodes in
(hop, node id) order, the source first. ``k_hop`` adds the stored edges among the nodes found, in their
original order. This is what PyG's ``to_undirected`` + ``k_hop_subgraph`` followed by a BFS for the hops
gave, without touching all M edges per call. ``bfs_edge_list`` runs the same search over a small edge list
of arbitrary node ids (e.g. the global ids of one WikiWeb2M page).

Modality views (``modality_views``)
-----------------------------------
Reference models such as Graph4MM (Ning et al., 2025, "Graph4MM: Weaving Multimodal Learning with
Structural Information") treat the text nodes and the image nodes of a sample as two graphs. The rules:

* a sample node with non-empty text (``text`` not None and not "") gives one *text node*; a node with an
  image (``image`` not None and not "") gives one *image node*. A node with both gives one of each, linked
  by a cross edge: that is how the two modalities of one node meet.
* an edge (u, v) of type named ``"text-text"`` links text(u) -> text(v); ``"image-image"`` links
  image(u) -> image(v); ``"text-image"`` (stored undirected, both directions, without saying which end is
  the text) links text(u)-image(v) and image(u)-text(v), each where both ends are present.
* an edge of any other type name (single-type graphs such as Ele-fashion's co-purchase edges, or a user's
  own types) relates the whole nodes: text(u) -> text(v) and image(u) -> image(v), each where present.
* ``typed=False`` reads every edge by the last rule, whatever its type name: two related nodes relate through
  both their modalities (a text-image edge between two nodes that both have an image then also links their
  images). This is how the public Graph4MM code builds its image graph: images are linked when their
  sections are adjacent, whatever relates the sections.
* text and image edges keep the direction of the stored edge (an edge stored both ways gives both); each
  (source, target) pair appears once and self loops are dropped. Cross edges are undirected pairs: one row
  (text position, image position) per pair, never the reverse. Every edge list is sorted by its rows
  (lexicographic), so the views of a sample are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmbench.api import GraphSample

# --------------------------------------------------------------------------- adjacency


@dataclass(frozen=True)
class Adjacency:
    """Undirected CSR view of a directed edge list over ``num_nodes`` nodes (N nodes, M stored edges).

    indptr:     (N + 1,) int64; node u's entries are ``[indptr[u], indptr[u + 1])``
    neighbors:  (2M,) int64, the other end of each entry (a self loop (u, u) is listed twice under u)
    edge_ids:   (2M,) int64, the column of the entry's edge in ``edge_index``
    edge_index: (2, M) int64, the stored directed edges (row 0 source, row 1 target)
    """

    indptr: np.ndarray
    neighbors: np.ndarray
    edge_ids: np.ndarray
    edge_index: np.ndarray

    @property
    def num_nodes(self) -> int:
        return len(self.indptr) - 1

    @classmethod
    def from_edge_index(cls, edge_index: torch.Tensor | np.ndarray, num_nodes: int) -> Adjacency:
        """edge_index (2, M) with ids in [0, num_nodes); O(M log M) once."""
        ei = np.ascontiguousarray(np.asarray(edge_index, dtype=np.int64).reshape(2, -1))
        m = ei.shape[1]
        ends = np.concatenate([ei[0], ei[1]])  # entry i is listed under ends[i] ...
        other = np.concatenate([ei[1], ei[0]])  # ... with neighbour other[i]
        order = np.argsort(ends, kind="stable")
        indptr = np.zeros(num_nodes + 1, dtype=np.int64)
        np.cumsum(np.bincount(ends, minlength=num_nodes), out=indptr[1:])
        return cls(indptr=indptr, neighbors=other[order], edge_ids=np.tile(np.arange(m, dtype=np.int64), 2)[order],
                   edge_index=ei)

    def entries(self, nodes: np.ndarray) -> np.ndarray:
        """Positions in ``neighbors``/``edge_ids`` of all entries of ``nodes`` (n,), row after row."""
        starts = self.indptr[nodes]
        counts = self.indptr[nodes + 1] - starts
        # entry j of the concatenation lies in row r at starts[r] + (j - first[r]), first[r] = its first index
        first = np.cumsum(counts) - counts
        return np.repeat(starts - first, counts) + np.arange(int(counts.sum()), dtype=np.int64)


# --------------------------------------------------------------------------- search


def bfs(adj: Adjacency, source: int, max_hops: int | None = None,
        max_nodes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Breadth-first search from ``source``, edges followed in both directions.

    max_hops:  stop at this distance (None: every reachable node)
    max_nodes: stop after the first hop level that brings the count to ``max_nodes`` or more; the first
               ``max_nodes`` entries are then those of the unlimited search (levels are complete)
    returns nodes (n,) int64 ordered by (hop, node id), ``source`` first, and their hops (n,) int64
    """
    seen = np.zeros(adj.num_nodes, dtype=bool)
    seen[source] = True
    levels = [np.array([source], dtype=np.int64)]
    count = 1
    while (max_hops is None or len(levels) <= max_hops) and (max_nodes is None or count < max_nodes):
        reached = adj.neighbors[adj.entries(levels[-1])]
        level = np.unique(reached[~seen[reached]])  # sorted: node id order within the level
        if not level.size:
            break
        seen[level] = True
        levels.append(level)
        count += level.size
    hops = np.repeat(np.arange(len(levels), dtype=np.int64), [len(x) for x in levels])
    return np.concatenate(levels), hops


def induced_edges(adj: Adjacency, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The stored edges with both ends in ``nodes`` (n,) distinct ids.

    returns edge_ids (m,) int64 ascending (the original edge order), edge_index (2, m) int64 relabelled to
    positions in ``nodes``
    """
    order = np.argsort(nodes, kind="stable")
    ranked = nodes[order]
    at = adj.entries(nodes)
    inside = _positions(ranked, adj.neighbors[at]) >= 0
    ids = np.unique(adj.edge_ids[at[inside]])  # an inside edge is listed under both ends: once each
    return ids, order[_positions(ranked, adj.edge_index[:, ids])]


def k_hop(adj: Adjacency, node: int, k: int,
          max_nodes: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The k-hop neighbourhood of ``node``, nearest first, cut to its first ``max_nodes`` nodes if given.

    returns subset (n,) node ids ordered by (hop, id) with ``node`` first, edge_ids (m,) ascending ids of the
    stored edges among ``subset``, edge_index (2, m) those edges relabelled to positions in ``subset``,
    hops (n,); all int64
    """
    if max_nodes is not None and max_nodes < 0:
        raise ValueError(f"max_nodes must be >= 0, got {max_nodes}")
    subset, hops = bfs(adj, int(node), max_hops=k, max_nodes=max_nodes)
    if max_nodes is not None:
        subset, hops = subset[:max_nodes], hops[:max_nodes]
    ids, edge_index = induced_edges(adj, subset)
    return subset, ids, edge_index, hops


def bfs_edge_list(edge_index: np.ndarray, source: int) -> dict[int, int]:
    """Hop distance from ``source`` to every node reachable over a small edge list of arbitrary (e.g.
    global) node ids, edges followed in both directions: a compact CSR over the ids present, then ``bfs``.

    edge_index: (2, M) int array (row 0 source, row 1 target)
    returns {node id: hop}, ``source`` at hop 0
    """
    ei = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    ids, local = np.unique(np.append(ei.ravel(), source), return_inverse=True)
    adj = Adjacency.from_edge_index(local[:-1].reshape(2, -1), len(ids))
    nodes, hops = bfs(adj, int(local[-1]))
    return dict(zip(ids[nodes].tolist(), hops.tolist(), strict=True))


def _positions(ranked: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of each value in the sorted array ``ranked``, -1 where absent (same shape as ``values``)."""
    if not ranked.size:
        return np.full(values.shape, -1, dtype=np.int64)
    at = np.minimum(np.searchsorted(ranked, values), ranked.size - 1)
    return np.where(ranked[at] == values, at, -1)


# --------------------------------------------------------------------------- modality views

_TEXT, _IMAGE, _CROSS, _WHOLE = range(4)
_EDGE_RULES = {"text-text": _TEXT, "image-image": _IMAGE, "text-image": _CROSS}  # other names: _WHOLE


@dataclass(frozen=True)
class ModalityViews:
    """A sample as a text graph and an image graph (rules in the module docstring). All tensors long.

    text_nodes:  (n_t,) ascending indices into ``sample.nodes`` of the nodes with non-empty text
    image_nodes: (n_i,) ascending indices into ``sample.nodes`` of the nodes with an image
    text_edges:  (2, m_t) positions in ``text_nodes``
    image_edges: (2, m_i) positions in ``image_nodes``
    cross_edges: (2, m_x) rows (position in ``text_nodes``, position in ``image_nodes``)
    text_hops:   (n_t,) hop of each text node (``SampleNode.hop``)
    image_hops:  (n_i,) hop of each image node
    """

    text_nodes: torch.Tensor
    image_nodes: torch.Tensor
    text_edges: torch.Tensor
    image_edges: torch.Tensor
    cross_edges: torch.Tensor
    text_hops: torch.Tensor
    image_hops: torch.Tensor


def modality_views(sample: GraphSample, typed: bool = True) -> ModalityViews:
    """Split ``sample`` into its text graph, its image graph and the text-image links between them; with
    ``typed=False`` every edge relates the whole nodes (module docstring)."""
    n = len(sample.nodes)
    text_pos = _slots([bool(x.text) for x in sample.nodes])  # (n,) position in text_nodes, -1 = no text
    image_pos = _slots([bool(x.image) for x in sample.nodes])
    hops = np.array([x.hop for x in sample.nodes], dtype=np.int64)
    u, v = np.asarray(sample.edge_index, dtype=np.int64).reshape(2, -1)
    codes = np.array([_EDGE_RULES.get(name, _WHOLE) if typed else _WHOLE for name in sample.edge_type_names],
                     dtype=np.int64)
    rule = codes[np.asarray(sample.edge_type, dtype=np.int64)]  # (m,) one of the rule codes
    text_like, image_like = (rule == _TEXT) | (rule == _WHOLE), (rule == _IMAGE) | (rule == _WHOLE)
    cross, own = rule == _CROSS, np.arange(n)
    text_nodes, image_nodes = np.flatnonzero(text_pos >= 0), np.flatnonzero(image_pos >= 0)
    return ModalityViews(
        text_nodes=torch.from_numpy(text_nodes), image_nodes=torch.from_numpy(image_nodes),
        text_edges=_pairs(text_pos[u[text_like]], text_pos[v[text_like]], drop_loops=True),
        image_edges=_pairs(image_pos[u[image_like]], image_pos[v[image_like]], drop_loops=True),
        # a node's own two modalities, then both readings of every text-image edge
        cross_edges=_pairs(np.concatenate([text_pos[own], text_pos[u[cross]], text_pos[v[cross]]]),
                           np.concatenate([image_pos[own], image_pos[v[cross]], image_pos[u[cross]]])),
        text_hops=torch.from_numpy(hops[text_nodes]), image_hops=torch.from_numpy(hops[image_nodes]))


def _slots(present: list[bool]) -> np.ndarray:
    """(n,) running index among the present entries, -1 where absent."""
    mask = np.array(present, dtype=bool)
    out = np.full(mask.size, -1, dtype=np.int64)
    out[mask] = np.arange(int(mask.sum()))
    return out


def _pairs(a: np.ndarray, b: np.ndarray, drop_loops: bool = False) -> torch.Tensor:
    """(2, m) distinct rows (a, b) sorted lexicographically, rows with a missing end (-1) dropped."""
    keep = (a >= 0) & (b >= 0)
    if drop_loops:
        keep &= a != b
    rows = np.unique(np.stack([a[keep], b[keep]], axis=1).reshape(-1, 2), axis=0)
    return torch.from_numpy(np.ascontiguousarray(rows.T.reshape(2, -1)))
