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
        state["cls"] = cls = get_model(model)
        if cls.family != state["card"].family:
            raise MMBenchError(f"{cls.__name__} is a {cls.family or 'family-less'} adapter; task {task} is "
                               f"{state['card'].family}. Subclass the matching base in mmbench.api.")
        return f"{cls.__module__}:{cls.__qualname__}, family {cls.family}"

    def config() -> str:
        cls = state["cls"]
        names = {f.name for f in dataclasses.fields(cls.Config)}
        smoke = {k: v for k, v in SMOKE.items() if k in names}
        state["config"] = build_config(cls.Config, state["card"].name, cls.presets, {**smoke, **overrides},
                                       f"model {model}")
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

    def scores() -> str:
        from mmbench.jobs.kgc import score_fns

        ds = state["ds"]
        queries = (ds.valid if len(ds.valid) else ds.train)[:8]
        m = state["m1"]
        m.begin_scoring()
        try:
            fns = score_fns(m, ds.num_entities, "valid")
            tails = fns["tail"](queries[:, 0], queries[:, 1], 0)
            heads = fns["head"](queries[:, 2], queries[:, 1], 0)
        finally:
            m.end_scoring()
        state["scores"] = (tails, heads)
        return f"score_tails and score_heads give ({len(queries)}, {ds.num_entities}) {tails.dtype}, no NaN"

    def determinism() -> str:
        from mmbench.jobs.kgc import score_fns

        ds = state["ds"]
        queries = (ds.valid if len(ds.valid) else ds.train)[:8]
        m2 = _trained(state, seed)
        m2.begin_scoring()
        try:
            fns = score_fns(m2, ds.num_entities, "valid")
            tails, heads = fns["tail"](queries[:, 0], queries[:, 1], 0), fns["head"](queries[:, 2], queries[:, 1], 0)
        finally:
            m2.end_scoring()
        t1, h1 = state["scores"]
        diff = max(float((tails - t1).abs().max()), float((heads - h1).abs().max()))
        if diff > 1e-5:
            raise MMBenchError(f"two runs with seed {seed} differ by up to {diff:.3g} in their scores; derive "
                               f"all randomness (init, shuffling, dropout) from the seed passed to setup()")
        return f"two runs with seed {seed} agree (max |diff| {diff:.2g})"

    for name, fn in (("resolve model and task", resolve), ("build config", config), ("load task data", data),
                     ("setup and train one epoch", build_and_train), ("score shapes, dtype, NaN", scores),
                     ("determinism under a seed", determinism)):
        if not attempt(name, fn):
            break
    return checks


def _trained(state: dict[str, Any], seed: int) -> Any:
    seed_everything(seed)
    m = state["cls"](state["config"])
    m.setup(state["ds"].training_view(), seed)
    state["loss"] = float(m.train_epochs(1, 1)[0])
    return m
