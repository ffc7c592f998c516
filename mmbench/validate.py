"""``mmbench validate-adapter``: a short smoke check of an adapter on a task, with explanations."""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from mmbench.config import build_config
from mmbench.data import load_task_data
from mmbench.errors import MMBenchError
from mmbench.registry import get_model
from mmbench.runner import seed_everything
from mmbench.tasks import get_card
from mmbench.training import epoch_losses

SMOKE = {"epochs": 1, "eval_every": 1}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def validate_adapter(model: str, task: str, overrides: dict[str, Any], seed: int = 0,
                     verify_data: bool = True) -> list[Check]:
    """Run the checks in order; stop at the first failure that makes later ones meaningless."""
    checks: list[Check] = []

    def attempt(name: str, fn: Callable[[], str]) -> bool:
        try:
            checks.append(Check(name, True, fn()))
            return True
        except MMBenchError as e:
            checks.append(Check(name, False, str(e)))
        except Exception as e:  # noqa: BLE001  (report any adapter failure with its origin)
            tb = traceback.extract_tb(e.__traceback__)[-1]
            checks.append(Check(name, False, f"{type(e).__name__}: {e} (at {tb.filename}:{tb.lineno})"))
        return False

    state: dict[str, Any] = {}

    def resolve() -> str:
        state["card"] = get_card(task)
        state["cls"] = cls = get_model(model, state["card"].family)
        if cls.family != state["card"].family:
            raise MMBenchError(f"{cls.__name__} is a {cls.family or 'family-less'} adapter; task {task} is "
                               f"{state['card'].family}. Subclass the matching base in mmbench.api.")
        return f"{cls.__module__}:{cls.__qualname__}, family {cls.family}"

    def config() -> str:
        cls = state["cls"]
        names = {f.name for f in dataclasses.fields(cls.Config)}
        smoke = {k: v for k, v in SMOKE.items() if k in names}
        state["config"] = build_config(cls.Config, state["card"].name, cls.presets, {**smoke, **overrides},
                                       f"model {model}", card=state["card"])
        return f"{len(names)} config keys; smoke run with {smoke}"

    def data() -> str:
        state["ds"] = ds = load_task_data(state["card"], verify=verify_data)
        return f"{ds.stats()}"

    def build_and_train() -> str:
        state["m1"] = _trained(state, seed)
        loss = state["loss"]
        if not torch.isfinite(torch.tensor(loss)):
            raise MMBenchError(f"train_epochs(1, 1) returned loss {loss}; expected a finite float")
        return f"setup + one epoch, loss {loss:.4f}, {state['m1'].num_parameters():,} parameters"

    def outputs() -> str:
        state["out"], detail = _probe(state, state["m1"])
        return detail

    def determinism() -> str:
        again, _ = _probe(state, _trained(state, seed))
        first = state["out"]
        if isinstance(first, list):
            if again != first:
                raise MMBenchError(f"two runs with seed {seed} generate different texts ({first[0]!r} vs "
                                   f"{again[0]!r}); derive all randomness from the seed passed to setup()")
            return f"two runs with seed {seed} generate the same texts"
        diff = max(float((a - b).abs().max()) for a, b in zip(first, again, strict=True))
        if diff > 1e-5:
            raise MMBenchError(f"two runs with seed {seed} differ by up to {diff:.3g} in their scores; derive "
                               f"all randomness (init, shuffling, dropout) from the seed passed to setup()")
        return f"two runs with seed {seed} agree (max |diff| {diff:.2g})"

    for name, fn in (("resolve model and task", resolve), ("build config", config), ("load task data", data),
                     ("setup and train one epoch", build_and_train), ("output shapes, dtype, NaN", outputs),
                     ("determinism under a seed", determinism)):
        if not attempt(name, fn):
            break
    return checks


def _job(state: dict[str, Any]) -> Any:
    """The task family's job object (built once): the adapter's view and the checked output probe."""
    if "job" not in state:
        from mmbench.jobs import JobOptions, family_job
        from mmbench.progress import Progress

        card = state["card"]
        state["job"] = family_job(card.family)(state["ds"], card, JobOptions(), Progress(quiet=True))
    return state["job"]


def _view(state: dict[str, Any]) -> Any:
    """A small view of the task data for the smoke run (the family's ``small_view``)."""
    if "view" not in state:
        state["view"] = _job(state).small_view()
    return state["view"]


def _trained(state: dict[str, Any], seed: int) -> Any:
    seed_everything(seed)
    m = state["cls"](state["config"])
    m.setup(_view(state), seed)
    state["loss"] = epoch_losses(m, 1, 1)[0]
    return m


def _probe(state: dict[str, Any], m: Any) -> tuple[Any, str]:
    """A few outputs of a trained adapter, checked as the harness checks every real batch."""
    _view(state)
    return _job(state).probe(m)
