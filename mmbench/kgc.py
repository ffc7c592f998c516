"""The KGC job: train with validation-based selection, then score the test split once."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from mmbench.api import KGCModel
from mmbench.data.kg import KGDataset
from mmbench.errors import AdapterError
from mmbench.metrics.ranking import RankingEvaluator, RankingResult, ScoreFn
from mmbench.progress import Progress
from mmbench.tasks import TaskCard


def check_scores(out: Any, expected_rows: int, num_entities: int, where: str) -> torch.Tensor:
    """Validate one batch of adapter scores; ``where`` names the method, batch and split."""
    if not isinstance(out, torch.Tensor):
        raise AdapterError(f"{where}: returned {type(out).__name__}, expected a torch.Tensor of shape "
                           f"({expected_rows}, {num_entities})")
    if tuple(out.shape) != (expected_rows, num_entities):
        raise AdapterError(f"{where}: returned shape {tuple(out.shape)}, expected (B={expected_rows}, "
                           f"num_entities={num_entities}): one row per query, one column per entity")
    if not out.is_floating_point():
        raise AdapterError(f"{where}: returned dtype {out.dtype}, expected a floating-point tensor")
    if bool(torch.isnan(out).any()):
        n = int(torch.isnan(out).any(1).sum())
        raise AdapterError(f"{where}: {n} of {expected_rows} score rows contain NaN")
    return out


def score_fns(model: KGCModel, num_entities: int, split: str) -> dict[str, ScoreFn]:
    """Wrap the adapter's two methods so every batch is checked and moved to the CPU."""
    name = type(model).__name__

    def tails(anchor: torch.Tensor, rel: torch.Tensor, b: int) -> torch.Tensor:
        with torch.no_grad():
            out = model.score_tails(anchor, rel)
        return check_scores(out, len(anchor), num_entities, f"{name}.score_tails (batch {b}, {split} split)") \
            .detach().cpu().clone()

    def heads(anchor: torch.Tensor, rel: torch.Tensor, b: int) -> torch.Tensor:
        with torch.no_grad():
            out = model.score_heads(rel, anchor)
        return check_scores(out, len(anchor), num_entities, f"{name}.score_heads (batch {b}, {split} split)") \
            .detach().cpu().clone()

    return {"tail": tails, "head": heads}


@dataclass
class KGCOutcome:
    valid: RankingResult | None
    test: RankingResult
    selection: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0


def selection_key(card: TaskCard) -> str:
    return card.protocol.get("selection_metric", "both.realistic.mrr")


def evaluate_split(model: KGCModel, ds: KGDataset, split: str, evaluator: RankingEvaluator,
                   progress: Progress) -> RankingResult:
    triples = getattr(ds, split)
    bar = progress.bar(evaluator.num_batches(triples), f"score {split}", unit="batch")
    model.begin_scoring()
    try:
        return evaluator.evaluate(triples, score_fns(model, ds.num_entities, split), on_batch=lambda: bar.update())
    finally:
        model.end_scoring()
        bar.close()


def fit_and_score(model: KGCModel, ds: KGDataset, card: TaskCard, seed: int, progress: Progress,
                  checkpoint_state: dict[str, Any] | None = None) -> KGCOutcome:
    """Train (or load ``checkpoint_state``), select on validation, score test once."""
    sched = model.config
    bs = getattr(sched, "eval_batch_size", 512)
    valid_eval = RankingEvaluator(ds.num_entities, ds.num_relations, torch.cat([ds.train, ds.valid]), bs)
    key = selection_key(card)
    model.setup(ds.training_view(), seed)
    history: list[dict[str, Any]] = []
    t_train = time.perf_counter()
    eval_seconds = 0.0
    epochs = 0 if checkpoint_state is not None else int(getattr(sched, "epochs", 0))
    has_valid = len(ds.valid) > 0
    best: tuple[float, int, dict[str, Any], RankingResult] | None = None
    checks_since_best = 0
    if checkpoint_state is not None:
        model.load_state_dict(checkpoint_state)
    bar = progress.bar(epochs, f"train {model.name}", unit="epoch", leave=False)
    every = max(1, int(getattr(sched, "eval_every", 1)))
    patience = int(getattr(sched, "patience", 0))
    epoch = 0
    while epoch < epochs:
        count = min(every - epoch % every, epochs - epoch)  # up to the next validation point
        losses = [float(x) for x in model.train_epochs(epoch + 1, count)]
        if len(losses) != count:
            raise AdapterError(f"{type(model).__name__}.train_epochs({epoch + 1}, {count}) returned "
                               f"{len(losses)} losses, expected {count}")
        for i, loss in enumerate(losses, epoch + 1):
            if not math.isfinite(loss):
                raise AdapterError(f"{type(model).__name__}: training loss is {loss} at epoch {i}; lower the "
                                   f"learning rate or check the model for numerical problems")
            history.append({"epoch": i, "loss": round(loss, 6)})
        epoch += count
        bar.update(count)
        if has_valid:
            t0 = time.perf_counter()
            result = evaluate_split(model, ds, "valid", valid_eval, progress)
            value = result.metrics[key]
            eval_seconds += time.perf_counter() - t0
            history[-1]["valid"] = round(value, 6)
            if best is None or value > best[0]:
                best = (value, epoch, model.state_dict(), result)
                checks_since_best = 0
            else:
                checks_since_best += 1
        bar.set_postfix(loss=f"{losses[-1]:.4f}", **({"valid": f"{history[-1]['valid']:.4f}"}
                                                     if "valid" in history[-1] else {}))
        if patience and checks_since_best >= patience:
            progress.log(f"early stop at epoch {epoch}: no validation gain in {patience} checks")
            break
    bar.close()
    train_seconds = time.perf_counter() - t_train - eval_seconds
    if best is not None:
        model.load_state_dict(best[2])
        selection = {"metric": f"valid/{key}", "epoch": best[1], "value": best[0], "checks": sum(
            "valid" in h for h in history)}
    else:
        why = "checkpoint given" if checkpoint_state is not None else (
            "no validation split" if not has_valid else "no training epochs")
        selection = {"metric": None, "epoch": len(history), "value": None, "reason": why}
    t0 = time.perf_counter()
    if best is not None:
        valid_result: RankingResult | None = best[3]
    else:
        valid_result = evaluate_split(model, ds, "valid", valid_eval, progress) if has_valid else None
    test_eval = RankingEvaluator(ds.num_entities, ds.num_relations, torch.cat([ds.train, ds.valid, ds.test]), bs)
    test_result = evaluate_split(model, ds, "test", test_eval, progress)
    eval_seconds += time.perf_counter() - t0
    return KGCOutcome(valid=valid_result, test=test_result, selection=selection, history=history,
                      train_seconds=train_seconds, eval_seconds=eval_seconds)
