"""Feature-based node classifiers: ``mlp`` (no edges), ``gcn``, ``sage``, ``gat``, ``rgcn`` (PyTorch Geometric layers).

Input: one feature matrix per graph from ``mmbench.features.node_features`` (``features`` config field:
``text+image`` = MiniLM text ⊕ EfficientNet image features ⊕ two presence columns, the image block left out
on a graph without images; ``text``, ``image``, ``tfidf`` / ``tfidf:N`` (bag of words fitted on the training
nodes' texts, densified here), a precomputed set such as ``clip``, or ``+``-joined combinations such as
``tfidf+text+image``), computed once in ``setup``. The network is ``layers`` layers wide ``hidden`` with ReLU,
dropout before every layer (the input included, as in Kipf & Welling's GCN), trained full-batch over the
whole graph with Adam; messages flow row 0 -> row 1 of ``graph.edge_index`` as loaded (both directions for
undirected graphs), and the layers add self-loops as PyG does by default (GCNConv, GATConv; SAGEConv and
RGCNConv have their root weight).

Edge types (``describe()["edge_types"]`` says which rule ran, with its counts):
  * ``gcn``, ``sage``, ``gat`` ignore them, and a node pair linked by several edge types (parallel rows with
    the same source and target) is merged into one edge first (``mmbench.data.edges.merge_parallel``), so
    GCN's degree normalisation, SAGE's neighbour mean and GAT's attention softmax count the pair once; a
    graph without parallel edges is passed on unchanged, row for row.
  * ``rgcn`` (Schlichtkrull et al. 2018, "Modeling Relational Data with Graph Convolutional Networks";
    PyG ``RGCNConv``, https://pytorch-geometric.readthedocs.io/en/latest/generated/torch_geometric.nn.conv.RGCNConv.html)
    has one relation per edge type the graph declares (``edge_type_names``): ``h_v' = W_0 h_v + sum_r
    mean_{u in N_r(v)} W_r h_u``; only exact repeats of a (source, target, type) row are merged. The two
    directions of an undirected edge share its type (as the loaders store them), so there are no separate
    inverse relations (the paper adds r^-1 for directed KGs). ``num_bases`` > 0 uses the paper's basis
    decomposition of the W_r.
  * ``mlp`` uses no edges.

GAT: ``heads`` heads of width ``hidden / heads`` concatenated in hidden layers, one head at the output,
attention dropout = ``dropout``. Defaults follow Kipf & Welling's GCN set-up (2 layers, dropout 0.5, Adam
lr 0.01, weight decay 5e-4, 200 epochs) with a wider hidden layer (128) and validation every 10 epochs,
patience 5; every model shares them (GAT does not use the GAT paper's 8x8 heads, dropout 0.6, lr 0.005).
Not tuned per task.

Loss: cross-entropy over the **training classes only**. The output layer scores every class, but the
softmax of the loss runs over ``train_classes`` alone; on a zero-shot split the unseen classes are
therefore never pushed down (nor up) by training, instead of being learned as "never the answer".

Zero-shot splits (candidate classes never seen in training) need a classifier that can name a class it
has not seen. With ``zero_shot: label-similarity`` (default) the output layer maps each node into the
text-embedding space of the class names instead of onto class logits: class c is scored by
``cos(f(x)_v, t_c) / temperature`` where ``t_c`` is the frozen MiniLM embedding of ``label_template``
filled with the class name. Training is the same cross-entropy over the *seen* class names' embeddings
(the class weight matrix of an ordinary classifier, fixed to the names' embeddings); at test time the
unseen class names are scored the same way (DeViSE-style, Frome et al. 2013). It can only work as well
as the class names describe the classes (Ele-fashion ships placeholder names ``class_0`` .. unless a
``class_names.json`` is provided). Supervised splits always use the ordinary classifier;
``zero_shot: none`` refuses zero-shot splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.api import ClassificationModel, ClassificationTrainingData, TrainSchedule
from mmbench.data.edges import dedupe_typed, merge_parallel
from mmbench.errors import ConfigError
from mmbench.features import node_features
from mmbench.registry import register_model

ZERO_SHOT_MODES = ("label-similarity", "none")


@dataclass
class GNNConfig(TrainSchedule):
    epochs: int = 200
    eval_every: int = 10
    patience: int = 5
    features: str = "text+image"     # see mmbench.features: text, image, tfidf[:N], a precomputed set, or a+b
    hidden: int = 128
    layers: int = 2
    dropout: float = 0.5
    lr: float = 0.01
    weight_decay: float = 5e-4
    zero_shot: str = "label-similarity"   # how unseen candidate classes are scored: label-similarity | none
    label_template: str = "{name}"        # text embedded for a class name (label-similarity)
    temperature: float = 0.1              # cosine-similarity logits are divided by this (label-similarity)
    text_encoder: str = "minilm"
    image_encoder: str = "efficientnet-lite0"


@dataclass
class GATConfig(GNNConfig):
    heads: int = 4


@dataclass
class RGCNConfig(GNNConfig):
    num_bases: int = 0       # basis decomposition of the relation weights (Schlichtkrull et al. 2018); 0 = off


# Per-task feature sets come from the card (``protocol.features``, e.g. CLIP on Ele-fashion, MM-GRAPH's default:
# encoding the raw text and images of 97,766 nodes on the CPU is impractical); see mmbench.config.card_defaults.
PRESETS: dict[str, dict[str, Any]] = {}


class GNNNet(nn.Module):
    """x (N, in_dim), edge_index (2, M)[, edge_type (M,) for rgcn] -> (N, out_dim)."""

    def __init__(self, kind: str, in_dim: int, hidden: int, out_dim: int, layers: int, dropout: float,
                 heads: int = 1, num_relations: int = 1, num_bases: int = 0):
        super().__init__()
        from torch_geometric.nn import GATConv, GCNConv, RGCNConv, SAGEConv

        self.kind, self.dropout = kind, dropout
        dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        convs: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            last = i == layers - 1
            if kind == "mlp":
                convs.append(nn.Linear(a, b))
            elif kind == "gcn":
                convs.append(GCNConv(a, b, cached=True))  # the graph never changes: normalise it once
            elif kind == "sage":
                convs.append(SAGEConv(a, b))
            elif kind == "gat":
                convs.append(GATConv(a, b, heads=1, dropout=dropout) if last
                             else GATConv(a, b // heads, heads=heads, dropout=dropout))
            elif kind == "rgcn":
                convs.append(RGCNConv(a, b, num_relations, num_bases=num_bases or None, aggr="mean"))
            else:
                raise ValueError(kind)
        self.convs = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_type: torch.Tensor | None = None
                ) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = F.dropout(x, self.dropout, self.training)
            if self.kind == "mlp":
                x = conv(x)
            elif self.kind == "rgcn":
                x = conv(x, edge_index, edge_type)
            else:
                x = conv(x, edge_index)
            if i < len(self.convs) - 1:
                x = F.relu(x)
        return x


class GNNClassifier(ClassificationModel):
    """Adapter base; subclasses set ``kind``."""

    Config = GNNConfig
    presets = PRESETS
    kind = ""

    def setup(self, data: ClassificationTrainingData, seed: int) -> None:
        c = self.config
        if c.zero_shot not in ZERO_SHOT_MODES:
            raise ConfigError(f"{self.name}: zero_shot must be one of {', '.join(ZERO_SHOT_MODES)}, "
                              f"got {c.zero_shot!r}")
        if c.layers < 1:
            raise ConfigError(f"{self.name}: layers must be at least 1, got {c.layers}")
        heads = int(getattr(c, "heads", 1))
        if self.kind == "gat" and (heads < 1 or c.hidden % heads):
            raise ConfigError(f"{self.name}: hidden ({c.hidden}) must be a multiple of heads ({heads})")
        g = data.graph
        self.num_classes = len(data.class_names)
        self.unseen = sorted(set(data.candidate_classes) - set(data.train_classes))
        if self.unseen and c.zero_shot == "none":
            raise ConfigError(f"{self.name}: candidate classes {self.unseen} never occur in training (a zero-shot "
                              f"split); a supervised classifier cannot score them. Use --set "
                              f"zero_shot=label-similarity")
        x, self.feature_info = node_features(g, c.features, c.text_encoder, c.image_encoder, device=self.device,
                                             progress=self.progress, train_nodes=data.train_nodes)
        dev = self.device
        edge_index, edge_type = self._edges(g)
        self.x, self.edge_index = x.to(dev), edge_index.to(dev)
        self.edge_type = None if edge_type is None else edge_type.to(dev)
        self.class_emb: torch.Tensor | None = None
        if self.unseen:  # label-similarity: the output layer maps into the class-name embedding space
            from mmbench.backbones import encode_texts

            names = [c.label_template.format(name=n) for n in data.class_names]
            emb, _ = encode_texts(names, c.text_encoder)
            self.class_emb = F.normalize(emb.float(), dim=1).to(dev)  # (C, D_text)
        out_dim = self.num_classes if self.class_emb is None else self.class_emb.shape[1]
        labels = g.labels[data.train_nodes]
        train_classes = torch.tensor(sorted(data.train_classes), dtype=torch.long)
        pos = torch.full((self.num_classes,), -1, dtype=torch.long)
        pos[train_classes] = torch.arange(len(train_classes))
        keep = (labels >= 0) & (pos[labels.clamp_min(0)] >= 0)
        self.train_nodes = data.train_nodes[keep].to(dev)
        self.train_targets = pos[labels[keep]].to(dev)             # position within train_classes
        self.train_classes = train_classes.to(dev)
        with torch.random.fork_rng(devices=self._rng_devices()):
            torch.manual_seed(seed)
            self.module = GNNNet(self.kind, self.x.shape[1], c.hidden, out_dim, c.layers, c.dropout, heads,
                                 num_relations=len(g.edge_type_names),
                                 num_bases=int(getattr(c, "num_bases", 0))).to(dev)
            self._rng = self._get_rng()
        self.optimizer = torch.optim.Adam(self.module.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        self._cache: torch.Tensor | None = None

    def _edges(self, g: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The rows the layers see (module docstring): (2, K) edge_index and, for rgcn, (K,) edge types."""
        names = list(g.edge_type_names)
        if self.kind == "mlp":
            self.edge_rule = "not used (no message passing)"
            return torch.zeros(2, 0, dtype=torch.long), None
        if self.kind == "rgcn":
            if g.edge_type.numel() and (int(g.edge_type.min()) < 0 or int(g.edge_type.max()) >= len(names)):
                raise ConfigError(f"{self.name}: edge types must index the graph's {len(names)} edge_type_names")
            ei, et, merged = dedupe_typed(g.edge_index, g.edge_type, g.num_nodes, len(names))
            counts = torch.bincount(et, minlength=len(names)).tolist()
            self.edge_rule = f"one relation per type: {names}"
            self.edge_counts = {"per_relation": dict(zip(names, counts, strict=True)), "repeats_merged": merged}
            return ei, et
        ei, merged = merge_parallel(g.edge_index, g.num_nodes)
        self.edge_rule = f"ignored, parallel edges merged: {merged}"
        self.edge_counts = {"parallel_edges_merged": merged, "types_declared": names}
        return ei, None

    # ------------------------------------------------------------------ scoring
    def _forward(self, nodes: torch.Tensor | None = None) -> torch.Tensor:
        """Class scores (len(nodes) or N, num_classes); an MLP computes only the nodes asked for."""
        if self.kind == "mlp" and nodes is not None:
            out = self.module(self.x[nodes], self.edge_index)
        else:
            out = self.module(self.x, self.edge_index, self.edge_type)
            out = out if nodes is None else out[nodes]
        if self.class_emb is None:
            return out
        return F.normalize(out, dim=1) @ self.class_emb.t() / self.config.temperature

    # dropout draws from this model's own stream (CPU generator, plus the GPU's when on CUDA)
    def _rng_devices(self) -> list[int]:
        return [self.device.index or 0] if self.device.type == "cuda" else []

    def _get_rng(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        gpu = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return torch.get_rng_state(), gpu

    def _set_rng(self, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], self.device)

    def train_epoch(self, epoch: int) -> float:
        self.module.train()
        with torch.random.fork_rng(devices=self._rng_devices()):
            self._set_rng(self._rng)
            logits = self._forward(self.train_nodes)[:, self.train_classes]
            loss = F.cross_entropy(logits, self.train_targets)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self._rng = self._get_rng()
        return float(loss.item())

    def begin_scoring(self) -> None:
        super().begin_scoring()
        with torch.no_grad():
            self._cache = self._forward()

    def end_scoring(self) -> None:
        self._cache = None
        super().end_scoring()

    def predict(self, nodes: torch.Tensor) -> torch.Tensor:
        if self._cache is not None:
            return self._cache[nodes]
        return self._forward(nodes)

    def describe(self) -> dict[str, Any]:
        return {"features": self.feature_info, "edges": int(self.edge_index.shape[1]),
                "edge_types": self.edge_rule, **({"edge_counts": self.edge_counts} if self.kind != "mlp" else {}),
                "zero_shot": "label-similarity" if self.class_emb is not None else None,
                "unseen_classes": self.unseen}


@register_model("mlp")
class MLP(GNNClassifier):
    description = "MLP on node features (frozen MiniLM text + EfficientNet image, TF-IDF, or precomputed), no edges"
    kind = "mlp"


@register_model("gcn")
class GCN(GNNClassifier):
    description = "GCN (Kipf & Welling 2017, PyG GCNConv) on frozen node features, full-batch"
    kind = "gcn"


@register_model("sage")
class GraphSAGE(GNNClassifier):
    description = "GraphSAGE (Hamilton et al. 2017, PyG SAGEConv, mean aggregation) on frozen node features"
    kind = "sage"


@register_model("gat")
class GAT(GNNClassifier):
    description = "GAT (Velickovic et al. 2018, PyG GATConv, 4 heads) on frozen node features, full-batch"
    kind = "gat"
    Config = GATConfig


@register_model("rgcn")
class RGCN(GNNClassifier):
    description = "R-GCN (Schlichtkrull et al. 2018, PyG RGCNConv): one relation per edge type, full-batch"
    kind = "rgcn"
    Config = RGCNConfig

    def setup(self, data: ClassificationTrainingData, seed: int) -> None:
        if self.config.num_bases < 0:
            raise ConfigError(f"{self.name}: num_bases must be >= 0 (0 = no basis decomposition), got "
                              f"{self.config.num_bases}")
        super().setup(data, seed)
