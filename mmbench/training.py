"""The training loop every family shares: epochs in chunks up to each validation check, keep the
state that is best on validation, stop early after ``patience`` checks without gain."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mmbench.api import ModelAdapter
from mmbench.errors import AdapterError
from mmbench.progress import Progress

Validate = Callable[[], tuple[float, Any]]
"""() -> (selection value, higher is better; anything to keep with the best state, e.g. its metrics)."""


@dataclass
class Selection:
    epoch: int                      # epoch of the kept state (0: no training happened)
    value: float | None             # its validation value
    result: Any                     # what ``validate`` returned with it
    history: list[dict[str, Any]] = field(default_factory=list)
    checks: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0


def epoch_losses(model: ModelAdapter, first: int, count: int) -> list[float]:
    """``model.train_epochs(first, count)`` as floats; an adapter method that returns anything but ``count``
    numbers is named with what it returned."""
    own_loop = type(model).train_epochs is not ModelAdapter.train_epochs
    method = (f"{type(model).__name__}.train_epochs({first}, {count})" if own_loop
              else f"{type(model).__name__}.train_epoch")
    raw = model.train_epochs(first, count)
    if not isinstance(raw, (list, tuple)) or len(raw) != count:
        got = f"{len(raw)} losses" if isinstance(raw, (list, tuple)) else repr(raw)[:80]
        raise AdapterError(f"{type(model).__name__}.train_epochs({first}, {count}) returned {got}; expected a "
                           f"list of {count} losses")
    out = []
    for epoch, value in enumerate(raw, first):
        if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AdapterError(f"{method} returned {value!r} for epoch {epoch}; it must return the epoch's mean "
                               f"training loss as a number (a float)")
        out.append(float(value))
    return out


def train_with_selection(model: ModelAdapter, validate: Validate | None, progress: Progress) -> Selection:
    """Train ``model`` for ``config.epochs`` (in chunks of ``eval_every``), validate after each chunk,
    and leave the model in its best validated state. Without ``validate`` the last state is kept."""
    sched = model.config
    epochs = int(getattr(sched, "epochs", 0))
    every = max(1, int(getattr(sched, "eval_every", 1)))
    patience = int(getattr(sched, "patience", 0))
    history: list[dict[str, Any]] = []
    best: tuple[float, int, dict[str, Any], Any] | None = None
    since_best = checks = 0
    t_start = time.perf_counter()
    eval_seconds = 0.0
    bar = progress.bar(epochs, f"train {model.name}", unit="epoch", leave=False)
    epoch = 0
    while epoch < epochs:
        count = min(every - epoch % every, epochs - epoch)
        losses = epoch_losses(model, epoch + 1, count)
        for i, loss in enumerate(losses, epoch + 1):
            if not math.isfinite(loss):
                raise AdapterError(f"{type(model).__name__}: training loss is {loss} at epoch {i}; lower the "
                                   f"learning rate or check the model for numerical problems")
            history.append({"epoch": i, "loss": round(loss, 6)})
        epoch += count
        bar.update(count)
        if validate is not None:
            t0 = time.perf_counter()
            value, result = validate()
            eval_seconds += time.perf_counter() - t0
            checks += 1
            history[-1]["valid"] = round(value, 6)
            if best is None or value > best[0]:
                best = (value, epoch, model.state_dict(), result)
                since_best = 0
            else:
                since_best += 1
        bar.set_postfix(loss=f"{losses[-1]:.4f}", **({"valid": f"{history[-1]['valid']:.4f}"}
                                                     if "valid" in history[-1] else {}))
        if patience and since_best >= patience:
            progress.log(f"early stop at epoch {epoch}: no validation gain in {patience} checks")
            break
    bar.close()
    train_seconds = time.perf_counter() - t_start - eval_seconds
    if best is None:
        return Selection(epoch=epoch, value=None, result=None, history=history, checks=checks,
                         train_seconds=train_seconds, eval_seconds=eval_seconds)
    model.load_state_dict(best[2])
    return Selection(epoch=best[1], value=best[0], result=best[3], history=history, checks=checks,
                     train_seconds=train_seconds, eval_seconds=eval_seconds)
