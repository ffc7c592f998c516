"""``logreg`` and ``sgc``: multinomial logistic regression on node features, without and with propagated ones.

  logreg  scikit-learn ``LogisticRegression`` (L2 penalty, lbfgs, multinomial loss for more than two classes;
          https://scikit-learn.org/stable/modules/linear_model.html#logistic-regression) on the node's own
          feature row ``x_v`` (``features`` as for the GNNs: ``text+image``, ``tfidf``, ``tfidf+text+image``,
          a precomputed set ...; a TF-IDF block stays a scipy sparse matrix end to end).
  sgc     the same regression on ``[x_v ; (P X)_v ; (P^2 X)_v ; ... ; (P^hops X)_v]`` with ``P = D^-1 A`` the
          mean over v's neighbours in the undirected graph (both directions, parallel edges of any types
          merged, self-loops dropped; ``mmbench.data.edges.mean_adjacency``): block k is the average of
          the (k-1)-hop block over v's neighbours, i.e. the mean over k-step walks from v. SGC (Wu et al. 2019,
          "Simplifying Graph Convolutional Networks") feeds ``S^K X`` alone to a logistic regression;
          concatenating every hop as here is the SIGN variant (Frasca et al. 2020), which keeps the node's own
          features next to its neighbourhood's. Propagation is a fixed sparse product done once in ``setup``.

Choosing C on validation: the adapter never sees validation labels, so the grid ``Cs`` is run through the
harness's selection loop: epoch e fits a fresh model with the e-th smallest C (``epochs`` is forced to
``len(Cs)``, validation after every epoch, no early stop), the harness keeps the state with the best
validation accuracy (the first, i.e. the smallest C, on ties) and ``describe()["C"]`` names it. The record's
training history lists every C's validation score. Nothing is random (lbfgs is deterministic; the seed is
unused), so one seed is enough. scikit-learn computes on the CPU whatever ``--device`` says; its BLAS threads
are limited to torch's thread count (``--threads``).

Zero-shot splits (candidate classes without training nodes) are refused: a logistic regression learns one
weight vector per training class and has nothing to score an unseen class with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from baselines.gnn import PRESETS
from mmbench.api import ClassificationModel, ClassificationTrainingData, TrainSchedule
from mmbench.data.edges import mean_adjacency
from mmbench.errors import ConfigError
from mmbench.features import node_features
from mmbench.registry import register_model


@dataclass
class LinearConfig(TrainSchedule):
    epochs: int = 6                 # always len(Cs): one fit per C (any other value is reset)
    eval_every: int = 1             # always 1: every C is validated
    patience: int = 0               # always 0: the whole grid runs
    features: str = "text+image"    # see mmbench.features: text, image, tfidf, tfidf:N, '+'-combinations, clip ...
    Cs: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0])  # inverse L2 strengths
    max_iter: int = 1000            # lbfgs iterations per fit
    text_encoder: str = "minilm"
    image_encoder: str = "efficientnet-lite0"

    def __post_init__(self) -> None:
        cs = self.Cs if isinstance(self.Cs, (list, tuple)) else [self.Cs]
        if not cs or any(isinstance(c, bool) or not isinstance(c, (int, float)) or not c > 0 for c in cs):
            raise ConfigError(f"Cs must be a non-empty list of numbers > 0, got {self.Cs!r}")
        if len(set(cs)) != len(cs):
            raise ConfigError(f"Cs lists a value twice: {self.Cs!r}")
        if self.max_iter < 1:
            raise ConfigError(f"max_iter must be at least 1, got {self.max_iter}")
        self.Cs = sorted(float(c) for c in cs)  # ascending: on a validation tie the smaller C is kept
        self.epochs, self.eval_every, self.patience = len(self.Cs), 1, 0


@dataclass
class SGCConfig(LinearConfig):
    hops: int = 2                   # propagated blocks P X .. P^hops X next to X (0 = logreg)

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.hops, bool) or not isinstance(self.hops, int) or self.hops < 0:
            raise ConfigError(f"hops must be an integer >= 0, got {self.hops!r}")


Matrix = np.ndarray | sp.csr_matrix


def propagated(x: Matrix, p: sp.csr_matrix, hops: int) -> list[Matrix]:
    """X (N, D), P (N, N) -> [X, P X, ..., P^hops X], each (N, D), sparse where X is."""
    out = [x]
    for _ in range(hops):
        out.append(sp.csr_matrix(p @ out[-1]) if sp.issparse(x) else np.asarray(p @ out[-1]))
    return out


class LinearClassifier(ClassificationModel):
    """Adapter base: ``design_matrix`` builds the (N, F) input; one logistic regression per C."""

    Config = LinearConfig
    presets = PRESETS

    def design_matrix(self, x: Matrix, data: ClassificationTrainingData) -> Matrix:
        return x

    def setup(self, data: ClassificationTrainingData, seed: int) -> None:
        c = self.config
        data.refuse_unseen_classes(self.name, "a logistic regression learns one weight vector per training class "
                                              "and cannot score them")
        g = data.graph
        self.num_classes = len(data.class_names)
        x, self.feature_info = node_features(g, c.features, c.text_encoder, c.image_encoder, device=self.device,
                                             progress=self.progress, train_nodes=data.train_nodes, sparse=True)
        x = x if sp.issparse(x) else x.numpy().astype(np.float32, copy=False)
        self.x = self.design_matrix(x, data)
        labels = g.labels[data.train_nodes]
        keep = (labels >= 0) & torch.isin(labels, torch.tensor(sorted(data.train_classes), dtype=torch.long))
        self.train_nodes = data.train_nodes[keep].numpy()
        self.train_labels = labels[keep].numpy()
        if not len(self.train_nodes):
            raise ConfigError(f"{self.name}: task {data.task} has no labelled training node")
        self.state: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ one fit per C
    def _fit(self, C: float) -> dict[str, torch.Tensor]:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from threadpoolctl import threadpool_limits

        classes = np.unique(self.train_labels)
        x = self.x[self.train_nodes]
        if len(classes) == 1:   # nothing to separate: that class everywhere
            coef, intercept, n_iter = np.zeros((1, x.shape[1]), np.float32), np.zeros(1, np.float32), 0
        else:
            clf = LogisticRegression(C=C, max_iter=self.config.max_iter)
            with threadpool_limits(limits=torch.get_num_threads()), warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)   # recorded as n_iter == max_iter instead
                clf.fit(x, self.train_labels)
            coef, intercept, n_iter = clf.coef_, clf.intercept_, int(np.max(clf.n_iter_))
            if len(classes) == 2:   # scikit-learn's binary form: one row for classes[1]; as logits [0, z]
                coef = np.vstack([np.zeros_like(coef), coef])
                intercept = np.concatenate([[0.0], intercept])
        return {"C": torch.tensor(C, dtype=torch.float64), "coef": torch.from_numpy(np.asarray(coef, np.float32)),
                "intercept": torch.from_numpy(np.asarray(intercept, np.float32)),
                "classes": torch.from_numpy(classes.astype(np.int64)), "n_iter": torch.tensor(n_iter)}

    def _log_probs(self, rows: np.ndarray) -> torch.Tensor:
        """rows (B,) node ids -> (B, K) log-probabilities over the training classes."""
        x = self.x[rows]
        logits = np.asarray(x @ self.state["coef"].numpy().T) + self.state["intercept"].numpy()
        return torch.log_softmax(torch.from_numpy(np.asarray(logits, np.float32)), dim=1)

    def train_epoch(self, epoch: int) -> float:
        """Fit with the ``epoch``-th smallest C; returns the mean training cross-entropy."""
        self.state = self._fit(self.config.Cs[epoch - 1])
        pos = {int(k): i for i, k in enumerate(self.state["classes"].tolist())}
        logp = self._log_probs(self.train_nodes)
        target = torch.tensor([pos[int(y)] for y in self.train_labels])
        return float(-logp[torch.arange(len(target)), target].mean())

    def state_dict(self) -> dict[str, Any]:
        return {k: v.clone() for k, v in self.state.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = {k: v.clone() for k, v in state.items()}

    def num_parameters(self) -> int:
        return int(self.state["coef"].numel() + self.state["intercept"].numel()) if self.state else 0

    def predict(self, nodes: torch.Tensor) -> torch.Tensor:
        """nodes (B,) -> (B, num_classes) log-probabilities; classes without training nodes get -1e9."""
        if not self.state:
            raise RuntimeError(f"{self.name}: predict before any fit (train_epoch)")
        logp = self._log_probs(nodes.cpu().numpy())
        out = torch.full((len(nodes), self.num_classes), -1e9)
        out[:, self.state["classes"]] = logp
        return out

    def describe(self) -> dict[str, Any]:
        c = self.config
        out: dict[str, Any] = {"C": float(self.state["C"]) if self.state else None, "Cs": list(c.Cs),
                               "selection": "C with the best validation accuracy (harness selection, one C per "
                                            "epoch; ties: the smaller C)",
                               "classifier": "scikit-learn LogisticRegression (L2, lbfgs)",
                               "lbfgs_iterations": int(self.state["n_iter"]) if self.state else None,
                               "max_iter": c.max_iter, "features": self.feature_info,
                               "input": {"shape": list(self.x.shape), "sparse": bool(sp.issparse(self.x))}}
        return out


@register_model("logreg")
class LogReg(LinearClassifier):
    description = "multinomial logistic regression (scikit-learn) on the node's own features, C chosen on valid"


@register_model("sgc")
class SGC(LinearClassifier):
    description = "SGC/SIGN-style: logistic regression on [X ; PX ; P^2X] (neighbour means), C chosen on valid"
    Config = SGCConfig

    def design_matrix(self, x: Matrix, data: ClassificationTrainingData) -> Matrix:
        g = data.graph
        p = mean_adjacency(g.edge_index, g.num_nodes)
        parts = propagated(x, p, self.config.hops)
        d = x.shape[1]
        self.propagation = {
            "hops": self.config.hops, "blocks": {f"hop{k}": [k * d, (k + 1) * d] for k in range(len(parts))},
            "operator": "P = D^-1 A, A undirected 0/1 (parallel edges of any types merged, self-loops dropped)",
            "edge_types": "ignored, parallel edges merged", "undirected_edges": int(p.nnz // 2),
            "isolated_nodes": int((p.getnnz(axis=1) == 0).sum())}
        return sp.hstack(parts, format="csr") if sp.issparse(x) else np.hstack(parts)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "propagation": self.propagation}
