"""The common in-memory form of a multimodal graph, G = (V, E, T, P), and k-hop neighbourhoods.

Nodes carry optional text and an optional image (a file path); edges are directed and typed
("text-text", "image-image", "text-image" by default; loaders add both directions of undirected
edges). Classification tasks fill ``labels``; generation tasks fill ``targets``. ``splits`` lists the
target nodes of each split. Adapters never receive this object with valid/test labels or targets:
see ``without_answers``. Neighbourhoods (``k_hop``, ``sample``) come from ``mmbench.data.subgraph`` over an
undirected CSR adjacency built once per instance.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from mmbench.api import FeatureSet, GraphSample, SampleNode
from mmbench.data import subgraph
from mmbench.data.subgraph import Adjacency
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
    @functools.cached_property
    def adjacency(self) -> Adjacency:
        """Undirected CSR view of ``edge_index``, built on first use and kept on this instance (copies made
        with ``dataclasses.replace`` or ``without_answers`` build their own; pickles leave it out)."""
        return Adjacency.from_edge_index(self.edge_index, self.num_nodes)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("adjacency", None)  # cheap to rebuild, large to ship
        return state

    def k_hop(self, node: int, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The k-hop neighbourhood of ``node`` (edges followed in both directions).

        returns subset (n,) node ids, ``node`` first, then ordered by (hop, node id); edge_index (2, m) the
        stored directed edges with both ends in ``subset`` (stored order), relabelled to positions in
        ``subset``; edge_type (m,) theirs; hops (n,) hop distance from ``node``
        """
        return self._neighbourhood(node, k, None)

    def sample(self, node: int, k: int, max_nodes: int, hide_target_text: bool = False) -> GraphSample:
        """A ``GraphSample`` for ``node``: the first ``max_nodes`` nodes of ``k_hop(node, k)`` and the stored
        edges among them (stored order); each ``SampleNode`` records its graph id in ``node``."""
        subset, ei, et, hops = self._neighbourhood(node, k, max_nodes)
        nodes = tuple(SampleNode(text=None if (hide_target_text and i == 0) else self.texts[v],
                                 image=self.images[v], kind=self.kinds[v], hop=h, node=v)
                      for i, (v, h) in enumerate(zip(subset.tolist(), hops.tolist(), strict=True)))
        return GraphSample(id=str(node), nodes=nodes, edge_index=ei, edge_type=et,
                           edge_type_names=self.edge_type_names)

    def _neighbourhood(self, node: int, k: int,
                       max_nodes: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        subset, ids, ei, hops = subgraph.k_hop(self.adjacency, node, k, max_nodes)
        return (torch.from_numpy(subset), torch.from_numpy(ei), self.edge_type[torch.from_numpy(ids)],
                torch.from_numpy(hops))


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
