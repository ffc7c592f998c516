"""The node-classification job: train with validation selection, predict the test nodes once."""

from __future__ import annotations

import functools
import time

import numpy as np
import torch

from mmbench.api import ClassificationModel, ClassificationTrainingData
from mmbench.data.graph import GraphTaskData
from mmbench.errors import AdapterError
from mmbench.jobs import JobOptions, JobOutcome, selection_summary
from mmbench.metrics.bootstrap import bootstrap_ci
from mmbench.metrics.classification import classification_metrics, per_class_table
from mmbench.progress import Progress
from mmbench.tasks import TaskCard
from mmbench.training import train_with_selection


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
                    split: str, batch_size: int, progress: Progress) -> np.ndarray:
    """Argmax over the candidate classes of the adapter's scores; every batch is checked."""
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
            out.append(cand[scores.detach().cpu()[:, cand].argmax(1)])
            bar.update()
    finally:
        model.end_scoring()
        bar.close()
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


def run_job(model: ClassificationModel, data: GraphTaskData, card: TaskCard, seed: int, progress: Progress,
            options: JobOptions) -> JobOutcome:
    view = training_view(data)
    g = data.graph
    labels = g.labels.numpy()
    n_cls = len(g.class_names)
    cand = view.candidate_classes
    bs = int(getattr(model.config, "eval_batch_size", 512))
    key = card.protocol.get("selection_metric", "accuracy")
    model.setup(view, seed)

    def score(split: str, nodes: torch.Tensor) -> tuple[dict[str, float], np.ndarray]:
        pred = predict_classes(model, nodes, n_cls, cand, split, bs, progress)
        return classification_metrics(labels[nodes.numpy()], pred, labels=list(cand)), pred

    def validate() -> tuple[float, dict[str, float]]:
        metrics, _ = score("valid", view.valid_nodes)
        return metrics[key], metrics

    if options.checkpoint_state is not None:
        model.load_state_dict(options.checkpoint_state)
    has_valid = len(view.valid_nodes) > 0
    sel = train_with_selection(model, validate if has_valid else None, progress) \
        if options.checkpoint_state is None else None
    t0 = time.perf_counter()
    valid_metrics = (sel.result if sel is not None and sel.result is not None
                     else (validate()[1] if has_valid else {}))
    test_metrics, pred = score("test", view.test_nodes)
    y_true = labels[view.test_nodes.numpy()]
    intervals = bootstrap_ci(lambda idx: classification_metrics(y_true[idx], pred[idx], labels=list(cand)),
                             len(y_true), options.bootstrap_resamples, options.bootstrap_seed)
    names = g.class_names
    samples = [{"node": int(v), "label": int(t), "pred": int(p), "label_name": names[t], "pred_name": names[p]}
               for v, t, p in zip(view.test_nodes.tolist(), y_true.tolist(), pred.tolist(), strict=True)]
    training = {"history": sel.history if sel else [],
                "selection": selection_summary(sel, key) if sel else {"metric": None, "reason": "checkpoint given"},
                "train_seconds": round(sel.train_seconds, 3) if sel else 0.0,
                "eval_seconds": round((sel.eval_seconds if sel else 0.0) + time.perf_counter() - t0, 3)}
    return JobOutcome(
        metrics={"valid": valid_metrics, "test": test_metrics},
        intervals={k: list(v) for k, v in intervals.items()}, training=training,
        protocol={"candidate_classes": list(cand), "train_classes": list(view.train_classes),
                  "zero_shot": list(view.train_classes) != list(cand) or None,
                  "macro_average_over": "candidate classes",
                  "bootstrap": {"resamples": options.bootstrap_resamples, "seed": options.bootstrap_seed,
                                "unit": "test node", "interval": "95% percentile"}},
        samples=samples if options.log_samples else None,
        extra={"per_class": [r for r in per_class_table(y_true, pred, names) if r["label"] in set(cand)]})
