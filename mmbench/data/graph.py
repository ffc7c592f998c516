"""The common in-memory form of a multimodal graph, G = (V, E, T, P), and k-hop neighbourhoods.

Nodes carry optional text and an optional image (a file path); edges are directed and typed
("text-text", "image-image", "text-image" by default; loaders add both directions of undirected
edges). Classification tasks fill ``labels``; generation tasks fill ``targets``. ``splits`` lists the
target nodes of each split. Adapters never receive this object with valid/test labels or targets:
see ``without_answers``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from mmbench.api import FeatureSet, GraphSample, SampleNode
from mmbench.io import sha256_hex

EDGE_TYPES = ("text-text", "image-image", "text-image")


@dataclass(frozen=True)
class MultimodalGraph:
    """num_nodes N, M edges.

    texts:       (N,) node text or None
    images:      (N,) image file path or None
    kinds:       (N,) node role, e.g. "section", "image", "product"
    edge_index:  (2, M) long, source row 0, target row 1
    edge_type:   (M,) long indices into ``edge_type_names``
    labels:      (N,) long class ids, -1 where unknown (classification)
    targets:     (N,) target text or None (generation)
    features:    name -> FeatureSet of precomputed node features (e.g. "clip")
    splits:      split name -> (n,) long target node ids
    groups:      (N,) long, e.g. the page a WikiWeb2M node belongs to (-1 when unused)
    """

    num_nodes: int
    texts: tuple[str | None, ...]
    images: tuple[str | None, ...]
    kinds: tuple[str, ...]
    edge_index: torch.Tensor
    edge_type: torch.Tensor
    edge_type_names: tuple[str, ...] = EDGE_TYPES
    labels: torch.Tensor | None = None
    class_names: tuple[str, ...] = ()
    targets: tuple[str | None, ...] | None = None
    features: dict[str, FeatureSet] = field(default_factory=dict)
    splits: dict[str, torch.Tensor] = field(default_factory=dict)
    groups: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.num_nodes
        for name in ("texts", "images", "kinds"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"MultimodalGraph.{name} has {len(getattr(self, name))} entries, expected {n}")
        if self.edge_index.numel() and (int(self.edge_index.max()) >= n or int(self.edge_index.min()) < 0):
            raise ValueError("MultimodalGraph.edge_index refers to a node outside [0, num_nodes)")
        if self.edge_index.shape[1] != self.edge_type.shape[0]:
            raise ValueError("MultimodalGraph.edge_type must have one entry per edge")

    # ------------------------------------------------------------------ protocol
    def without_answers(self, keep: torch.Tensor) -> MultimodalGraph:
        """A copy whose labels/targets are kept only for the nodes in ``keep`` (the training nodes)."""
        mask = torch.zeros(self.num_nodes, dtype=torch.bool)
        mask[keep] = True
        labels = None if self.labels is None else torch.where(mask, self.labels, torch.full_like(self.labels, -1))
        targets = None if self.targets is None else tuple(
            t if bool(mask[i]) else None for i, t in enumerate(self.targets))
        return dataclasses.replace(self, labels=labels, targets=targets, splits={},
                                   edge_index=self.edge_index.clone(), edge_type=self.edge_type.clone())

    def data_hash(self) -> str:
        """Hash of the content; image paths count relative to ``meta['image_root']`` so the same data
        hashes the same wherever it is installed."""
        root = self.meta.get("image_root")
        images = [p if p is None or not root else os.path.relpath(p, root) for p in self.images]
        parts: list[bytes | str] = [str(self.num_nodes), json.dumps([self.texts, images, self.kinds]),
                                    self.edge_index.contiguous().numpy().tobytes(),
                                    self.edge_type.numpy().tobytes(), json.dumps(self.edge_type_names)]
        if self.labels is not None:
            parts += [self.labels.numpy().tobytes(), json.dumps(self.class_names)]
        if self.targets is not None:
            parts.append(json.dumps(self.targets))
        for name in sorted(self.features):
            parts += [name, self.features[name].values.float().contiguous().numpy().tobytes()]
        for name in sorted(self.splits):
            parts += [name, self.splits[name].numpy().tobytes()]
        return sha256_hex(*parts)

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"nodes": self.num_nodes, "edges": int(self.edge_index.shape[1]),
                               "with_text": sum(t is not None for t in self.texts),
                               "with_image": sum(p is not None for p in self.images)}
        out.update({s: int(v.numel()) for s, v in self.splits.items()})
        if self.class_names:
            out["classes"] = len(self.class_names)
        return out

    # ------------------------------------------------------------------ neighbourhoods
    def k_hop(self, node: int, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The k-hop neighbourhood of ``node`` (edges followed in both directions).

        returns subset (n,) node ids with ``node`` first, edge_index (2, m) relabelled to positions in
        ``subset``, edge_type (m,), hops (n,) hop distance from ``node``
        """
        from torch_geometric.utils import k_hop_subgraph, to_undirected

        ei = to_undirected(self.edge_index, num_nodes=self.num_nodes) if self.edge_index.numel() else self.edge_index
        subset, _, _, _ = k_hop_subgraph(node, k, ei, relabel_nodes=False, num_nodes=self.num_nodes)
        subset = torch.cat([torch.tensor([node]), subset[subset != node]])
        hops = _bfs_hops(ei, node, subset, k)
        order = torch.argsort(hops * (self.num_nodes + 1) + torch.arange(len(subset)), stable=True)
        subset, hops = subset[order], hops[order]
        pos = torch.full((self.num_nodes,), -1, dtype=torch.long)
        pos[subset] = torch.arange(len(subset))
        keep = (pos[self.edge_index[0]] >= 0) & (pos[self.edge_index[1]] >= 0)
        return subset, pos[self.edge_index[:, keep]], self.edge_type[keep], hops

    def sample(self, node: int, k: int, max_nodes: int, hide_target_text: bool = False) -> GraphSample:
        """A ``GraphSample`` for ``node``: its k-hop neighbourhood, nearest first, at most ``max_nodes``."""
        subset, ei, et, hops = self.k_hop(node, k)
        if len(subset) > max_nodes:
            subset, hops = subset[:max_nodes], hops[:max_nodes]
            keep = (ei[0] < max_nodes) & (ei[1] < max_nodes)
            ei, et = ei[:, keep], et[keep]
        nodes = tuple(SampleNode(text=None if (hide_target_text and i == 0) else self.texts[v],
                                 image=self.images[v], kind=self.kinds[v], hop=int(h))
                      for i, (v, h) in enumerate(zip(subset.tolist(), hops.tolist(), strict=True)))
        return GraphSample(id=str(node), nodes=nodes, edge_index=ei, edge_type=et,
                           edge_type_names=self.edge_type_names)


def _bfs_hops(edge_index: torch.Tensor, source: int, subset: torch.Tensor, k: int) -> torch.Tensor:
    """Hop distance from ``source`` for each node of ``subset`` (k + 1 if farther, which k_hop excludes)."""
    n = int(max(int(subset.max()), int(edge_index.max()) if edge_index.numel() else 0)) + 1
    dist = torch.full((n,), k + 1, dtype=torch.long)
    dist[source] = 0
    frontier = torch.zeros(n, dtype=torch.bool)
    frontier[source] = True
    for h in range(1, k + 1):
        nxt = torch.zeros(n, dtype=torch.bool)
        nxt[edge_index[1][frontier[edge_index[0]]]] = True
        nxt &= dist > h
        dist[nxt] = h
        frontier = nxt
    return dist[subset]


@dataclass
class GraphTaskData:
    """Harness-side data of a generation or classification task (all answers included).

    assemble: for generation tasks, builds the ``GraphSample`` of a target node (its input text
              without the answer, plus its neighbourhood) following the dataset's own rules;
              defaults to ``graph.sample(node, hops, max_nodes, hide_target_text=False)``
    """

    task: str
    graph: MultimodalGraph
    hops: int = 2
    max_nodes: int = 16
    assemble_fn: Any = None
    verified: bool = True
    notes: list[str] = field(default_factory=list)

    def assemble(self, node: int) -> GraphSample:
        if self.assemble_fn is not None:
            return self.assemble_fn(node)
        return self.graph.sample(node, self.hops, self.max_nodes)

    def data_hash(self) -> str:
        return self.graph.data_hash()

    def stats(self) -> dict[str, Any]:
        return self.graph.stats()

    def describe(self) -> dict[str, Any]:
        return {"features": sorted(self.graph.features), "edge_types": list(self.graph.edge_type_names),
                **self.graph.meta.get("describe", {})}
