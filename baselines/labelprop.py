"""``labelprop``: label propagation, a structure-only node-classification floor (no node features at all).

Zhou et al. 2004, "Learning with Local and Global Consistency" (NeurIPS): with ``Y0`` (N, C) holding the
one-hot labels of the training nodes (zero rows elsewhere) and ``S = D^-1/2 W D^-1/2`` the symmetrically
normalised adjacency, iterate

    Y <- alpha * S @ Y + (1 - alpha) * Y0          (Y starts at Y0)

``iterations`` times; node v's scores are row v of Y (its limit is ``(1 - alpha) (I - alpha S)^-1 Y0``).
``W`` is built from ``graph.edge_index`` as an undirected 0/1 matrix: both directions of every edge, parallel
edges merged, self-loops dropped (Zhou et al. set W_ii = 0). A node without edges keeps its own Y0 row
(all zeros when unlabelled: every class ties and the harness's argmax picks the first candidate).

Nothing is trained (``epochs`` is forced to 0, so the harness skips training and validation selection, as
for ``lm-cls --set mode=likelihood``): ``setup`` runs the propagation once over the training labels.
Edge types, texts and images are ignored. PyG's ``torch_geometric.nn.LabelPropagation`` is not used: it
clamps Y to [0, 1] after every step (which Zhou et al.'s iteration does not; entries can exceed 1 next to
high-degree nodes, since a row of S sums to more than 1 there) and normalises the edge list as given,
counting parallel edges and one-directional rows as they come.

A class without training nodes gets score 0 everywhere, so the model cannot predict it: on a zero-shot
split (candidate classes outside ``train_classes``) ``setup`` refuses with a ``ConfigError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from mmbench.api import ClassificationModel, ClassificationTrainingData, TrainSchedule
from mmbench.errors import ConfigError
from mmbench.registry import register_model


@dataclass
class LabelPropConfig(TrainSchedule):
    value_ranges: ClassVar[dict[str, tuple]] = {"alpha": (0.0, True, 1.0, False)}  # 0 = the labels alone

    epochs: int = 0                 # nothing to train: always 0 (any other value is reset, as lm-cls likelihood)
    eval_every: int = 1
    patience: int = 0
    alpha: float = 0.9              # weight of the neighbours against the initial labels (Zhou et al. 2004: 0.99)
    iterations: int = 50            # propagation steps (alpha^50 = 0.005 of the start remains at alpha 0.9)

    def __post_init__(self) -> None:
        self.epochs = 0  # the harness then skips training and validation selection


def normalized_adjacency(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """edge_index (2, E) long -> S (N, N) sparse COO float: D^-1/2 W D^-1/2 with W the undirected 0/1
    adjacency (both directions, parallel edges merged, no self-loops); rows of isolated nodes are empty."""
    ei = edge_index.long()
    ei = ei[:, ei[0] != ei[1]]
    both = torch.cat([ei, ei.flip(0)], dim=1)
    key = torch.unique(both[0] * num_nodes + both[1])          # merges parallel edges, sorted by row
    row, col = key // num_nodes, key % num_nodes
    deg = torch.bincount(row, minlength=num_nodes).double()
    inv_sqrt = torch.where(deg > 0, deg.rsqrt(), torch.zeros_like(deg))
    values = inv_sqrt[row] * inv_sqrt[col]
    return torch.sparse_coo_tensor(torch.stack([row, col]), values, (num_nodes, num_nodes), is_coalesced=True,
                                   check_invariants=False)  # unique, sorted indices by construction


def propagate(s: torch.Tensor, y0: torch.Tensor, alpha: float, iterations: int) -> torch.Tensor:
    """S (N, N) sparse COO, Y0 (N, C) float -> Y (N, C) after ``iterations`` steps of
    Y <- alpha S Y + (1 - alpha) Y0, as message passing over S's entries on Y0's device (index_add works on
    every device backend, sparse matmul does not)."""
    s = s.coalesce()
    row, col = (x.to(y0.device) for x in s.indices())
    w = s.values().to(y0.device, y0.dtype).unsqueeze(1)
    y = y0.clone()
    for _ in range(iterations):
        y = alpha * torch.zeros_like(y).index_add_(0, row, w * y[col]) + (1 - alpha) * y0
    return y


@register_model("labelprop")
class LabelPropagation(ClassificationModel):
    description = ("Label propagation (Zhou et al. 2004) of the training labels over the undirected graph; "
                   "structure only, nothing trained")
    Config = LabelPropConfig

    def setup(self, data: ClassificationTrainingData, seed: int) -> None:
        c = self.config
        if not 0.0 <= c.alpha < 1.0:
            raise ConfigError(f"{self.name}: alpha must be in [0, 1), got {c.alpha}")
        if c.iterations < 0:
            raise ConfigError(f"{self.name}: iterations must be at least 0, got {c.iterations}")
        data.refuse_unseen_classes(self.name, "label propagation only spreads training labels over the edges, "
                                              "so it can never predict a class without labelled nodes")
        g = data.graph
        n, self.num_classes = g.num_nodes, len(data.class_names)
        labels = g.labels[data.train_nodes]
        keep = (labels >= 0) & torch.isin(labels, torch.tensor(sorted(data.train_classes), dtype=torch.long))
        train, labels = data.train_nodes[keep], labels[keep]
        y0 = torch.zeros(n, self.num_classes, dtype=torch.float64)
        y0[train, labels] = 1.0
        s = normalized_adjacency(g.edge_index, n)
        self.edges = int(s._nnz())                           # directed entries of the merged undirected W
        self.labelled = int(train.numel())
        self.scores = propagate(s, y0.to(self.device), c.alpha, c.iterations).float()   # (N, C)

    def train_epoch(self, epoch: int) -> float:
        return 0.0

    def predict(self, nodes: torch.Tensor) -> torch.Tensor:
        """nodes (B,) long -> (B, num_classes) propagated label mass."""
        return self.scores[nodes]

    def describe(self) -> dict[str, Any]:
        return {"alpha": self.config.alpha, "iterations": self.config.iterations,
                "undirected_edges": self.edges // 2, "labelled_nodes": self.labelled}
