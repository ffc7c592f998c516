"""The node-classification family (``mmbench.jobs.run_job`` runs the job)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from mmbench.api import ClassificationModel, ClassificationTrainingData
from mmbench.data.graph import GraphTaskData
from mmbench.errors import AdapterError
from mmbench.jobs import FamilyJob, JobOptions, Scored, register_family
from mmbench.metrics.bootstrap import bootstrap_ci
from mmbench.metrics.classification import classification_metrics, per_class_table
from mmbench.progress import Progress
from mmbench.tasks import TaskCard


def training_view(data: GraphTaskData) -> ClassificationTrainingData:
    """The adapter's view: the graph with only training labels, the node ids to predict, the classes."""
    g = data.graph
    n_cls = len(g.class_names)
    train_classes = tuple(g.meta.get("train_classes") or range(n_cls))
    candidates = tuple(g.meta.get("candidate_classes") or range(n_cls))
    train = g.splits["train"]
    free = g.without_answers(train)
    return ClassificationTrainingData(task=data.task, graph=free, train_nodes=train.clone(),
                                      valid_nodes=g.splits.get("valid", train[:0]).clone(),
                                      test_nodes=g.splits["test"].clone(), class_names=g.class_names,
                                      train_classes=train_classes, candidate_classes=candidates,
                                      hops=data.hops, max_nodes=data.max_nodes,
                                      assemble=functools.partial(free.sample, k=data.hops, max_nodes=data.max_nodes))


def predict_classes(model: ClassificationModel, nodes: torch.Tensor, num_classes: int, candidates: tuple[int, ...],
                    split: str, batch_size: int, progress: Progress, keep_scores: bool = False) -> Any:
    """Argmax over the candidate classes of the adapter's scores (every batch is checked): (n,) int64 array,
    or with ``keep_scores`` the checked (n, num_classes) score tensor itself."""
    cand = torch.tensor(candidates, dtype=torch.long)
    dev = getattr(model, "device", torch.device("cpu"))
    out = []
    model.begin_scoring()
    bar = progress.bar(-(-len(nodes) // batch_size), f"predict {split}", unit="batch")
    try:
        for b, s in enumerate(range(0, len(nodes), batch_size)):
            chunk = nodes[s:s + batch_size]
            with torch.no_grad():
                scores = model.predict(chunk.to(dev))
            where = f"{type(model).__name__}.predict (batch {b}, {split} split)"
            if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (len(chunk), num_classes):
                shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
                raise AdapterError(f"{where}: returned {shape}, expected a tensor of shape "
                                   f"(B={len(chunk)}, num_classes={num_classes})")
            if not scores.is_floating_point() or bool(torch.isnan(scores).any()):
                raise AdapterError(f"{where}: scores must be floating point without NaN")
            scores = scores.detach().cpu()
            out.append(scores if keep_scores else cand[scores[:, cand].argmax(1)])
            bar.update()
    finally:
        model.end_scoring()
        bar.close()
    if keep_scores:
        return torch.cat(out) if out else torch.zeros(0, num_classes)
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


@register_family("classification")
class ClassificationJob(FamilyJob):
    """Node classification: the adapter scores the candidate classes of node batches; accuracy and macro
    precision/recall/F1 over the candidate classes."""

    default_selection = "accuracy"

    def __init__(self, data: GraphTaskData, card: TaskCard, options: JobOptions, progress: Progress):
        super().__init__(data, card, options, progress)
        self._view = training_view(data)
        self.labels = data.graph.labels.numpy()
        self.candidates = self._view.candidate_classes

    @property
    def view(self) -> ClassificationTrainingData:
        return self._view

    def nodes(self, split: str) -> torch.Tensor:
        return self._view.valid_nodes if split == "valid" else self._view.test_nodes

    def has_split(self, split: str) -> bool:
        return len(self.nodes(split)) > 0

    def score(self, model: ClassificationModel, split: str) -> Scored:
        nodes = self.nodes(split)
        bs = int(getattr(model.config, "eval_batch_size", 512))
        pred = predict_classes(model, nodes, len(self.data.graph.class_names), self.candidates, split, bs,
                               self.progress)
        y = self.labels[nodes.numpy()]
        return Scored(classification_metrics(y, pred, labels=list(self.candidates)), (y, pred))

    def probe(self, model: ClassificationModel) -> tuple[Any, str]:
        nodes = (self._view.valid_nodes if len(self._view.valid_nodes) else self._view.test_nodes)[:8]
        n = len(self.data.graph.class_names)
        pred = predict_classes(model, nodes, n, self.candidates, "valid", len(nodes), self.progress,
                               keep_scores=True)
        return (pred,), f"predict gives ({len(nodes)}, {n}) floating-point scores, no NaN"

    def intervals(self, test: Scored) -> dict[str, list[float]]:
        y, pred = test.detail
        cand = list(self.candidates)
        o = self.options
        cis = bootstrap_ci(lambda idx: classification_metrics(y[idx], pred[idx], labels=cand), len(y),
                           o.bootstrap_resamples, o.bootstrap_seed)
        return {k: list(v) for k, v in cis.items()}

    def protocol(self, test: Scored) -> dict[str, Any]:
        v = self._view
        return {"candidate_classes": list(self.candidates), "train_classes": list(v.train_classes),
                "zero_shot": list(v.train_classes) != list(self.candidates) or None,
                "macro_average_over": "candidate classes", "bootstrap": self.bootstrap_protocol("test node")}

    def samples(self, test: Scored) -> list[dict[str, Any]]:
        y, pred = test.detail
        names = self.data.graph.class_names
        return [{"node": int(v), "label": int(t), "pred": int(p), "label_name": names[t], "pred_name": names[p]}
                for v, t, p in zip(self._view.test_nodes.tolist(), y.tolist(), pred.tolist(), strict=True)]

    def extra(self, test: Scored) -> dict[str, Any]:
        y, pred = test.detail
        cand = set(self.candidates)
        return {"per_class": [r for r in per_class_table(y, pred, self.data.graph.class_names)
                              if r["label"] in cand]}
