"""What an adapter can reach, for every family, after a first job has been scored in the same process.

The walker follows ``gc.get_referents`` from everything the adapter holds (the view it receives, itself, its
class): attributes, containers, closures, function globals, class dictionaries, ``functools`` caches. It stops
only at module objects (the rest of the interpreter) and at tensors (whose contents are checked).
"""

from __future__ import annotations

import gc
import types

import torch

from mmbench.api import ClassificationModel, GenerationModel, KGCModel, TrainSchedule
from mmbench.data import load_task_data
from mmbench.data.graph import GraphTaskData
from mmbench.data.kg import KGDataset
from mmbench.data.synth_kg import DEFAULTS, generate
from mmbench.jobs import JobOptions
from mmbench.progress import Progress
from mmbench.runner import run_family_job
from mmbench.tasks import get_card, parse_card

SMALL = {**DEFAULTS, "num_entities": 300, "num_types": 4, "num_regions": 5, "num_relations": 6,
         "num_triples": 1500, "domain_types_per_relation": 2}
KG_CARD = parse_card({"name": "synth-small", "version": 1, "family": "kgc", "description": "test",
                      "dataset": {"loader": "synth-mmkg"}, "splits": ["train", "valid", "test"],
                      "metrics": ["mrr"], "main_metric": "mrr"}, "<test>")
OPTIONS = JobOptions(bootstrap_resamples=10)


class Reach:
    """Objects, strings and tensors reachable from ``roots`` (see the module docstring)."""

    def __init__(self, *roots, limit: int = 5_000_000):
        self.objects: dict[int, object] = {}
        self.strings: set[str] = set()
        self.tensors: list[torch.Tensor] = []
        stack = list(roots)
        while stack and len(self.objects) < limit:
            obj = stack.pop()
            if isinstance(obj, str):
                self.strings.add(obj)
                continue
            if id(obj) in self.objects or isinstance(obj, (bytes, int, float, complex, bool, types.NoneType,
                                                           types.ModuleType)):
                continue
            self.objects[id(obj)] = obj
            if isinstance(obj, torch.Tensor):
                self.tensors.append(obj)
                continue
            stack.extend(gc.get_referents(obj))
        assert len(self.objects) < limit, "walk truncated: raise the limit"

    def instances(self, cls: type) -> list[object]:
        return [o for o in self.objects.values() if isinstance(o, cls)]


class Schedule(TrainSchedule):
    pass


def _spy(base: type, **methods):
    """An adapter of ``base`` that walks everything it can reach in ``setup`` (``self.reach``)."""

    own_setup = methods.pop("setup", lambda self, data: None)

    def setup(self, data, seed):
        self.data = data
        own_setup(self, data)
        self.reach = Reach(data, self, type(self))

    return type(f"Spy{base.__name__}", (base,), {"Config": TrainSchedule, "setup": setup,
                                                 "train_epoch": lambda self, epoch: 0.0, **methods})


def _run(model, data, card):
    return run_family_job(model, data, card, 0, Progress(quiet=True), OPTIONS)


def _rows(t: torch.Tensor) -> set[tuple[int, ...]]:
    return {tuple(r) for r in t.tolist()}


def test_kgc_adapter_after_a_scored_job_reaches_no_test_triple():
    table = {}

    def setup(self, data):
        table[id(self)] = torch.rand(data.num_entities, data.num_entities)

    Spy = _spy(KGCModel, setup=setup, score_tails=lambda self, h, r: table[id(self)][h],
               score_heads=lambda self, r, t: table[id(self)][t])
    first = generate(SMALL, task="synth-small")
    _run(Spy(), first, KG_CARD)  # a first job, scored in this process
    ds: KGDataset = generate(SMALL, task="synth-small")
    spy = Spy()
    _run(spy, ds, KG_CARD)
    test_only = _rows(ds.test) - _rows(ds.train) - _rows(ds.valid)
    assert len(test_only) > 100
    assert not spy.reach.instances(KGDataset)
    seen: set[tuple[int, ...]] = set()
    for t in spy.reach.tensors:
        if t.dim() == 2 and t.shape[1] == 3 and not t.is_floating_point():
            seen |= _rows(t)
    assert seen and not (seen & test_only)


def test_classification_adapter_after_a_scored_job_reaches_no_held_label():
    Spy = _spy(ClassificationModel, predict=lambda self, nodes: torch.zeros(len(nodes), len(self.data.class_names)))
    card = get_card("synth-cls")
    _run(Spy(), load_task_data(card), card)
    data: GraphTaskData = load_task_data(card)
    spy = Spy()
    _run(spy, data, card)
    labels = data.graph.labels
    held = torch.cat([data.graph.splits["valid"], data.graph.splits["test"]])
    assert not spy.reach.instances(GraphTaskData)
    assert not [o for o in spy.reach.objects.values() if o is data.graph]
    for t in spy.reach.tensors:
        if t.dim() == 1 and len(t) == len(labels) and not t.is_floating_point():
            assert bool((t[held] == -1).all()) or not bool((t[held] == labels[held]).all()), \
                "a reachable tensor holds the valid/test labels"
    assert spy.reach.instances(torch.Tensor)  # the walk did reach the graph's tensors


def test_generation_adapter_after_a_scored_job_reaches_no_test_target():
    Spy = _spy(GenerationModel, generate=lambda self, samples, **kw: ["the" for _ in samples])
    card = get_card("synth-gen")
    _run(Spy(), load_task_data(card), card)  # scores the test references once (sacrebleu, CIDEr, ...)
    data: GraphTaskData = load_task_data(card)
    spy = Spy()
    _run(spy, data, card)
    g = data.graph
    test_targets = {g.targets[int(i)] for i in g.splits["test"]}
    visible = set(spy.data.train_targets) | {n.text for s in spy.data.test + spy.data.valid + spy.data.train
                                             for n in s.nodes if n.text}
    hidden = test_targets - visible
    assert len(hidden) > 20
    assert not (spy.reach.strings & hidden)
    assert not spy.reach.instances(GraphTaskData)


def _sacrebleu_cache_entries() -> int:
    import inspect
    import sys

    total = 0
    for name, module in list(sys.modules.items()):
        if name.startswith("sacrebleu.tokenizers.") and module is not None:
            for obj in vars(module).values():
                for member in (vars(obj).values() if inspect.isclass(obj) else [obj]):
                    if hasattr(member, "cache_info"):
                        total += member.cache_info().currsize
    return total


def test_scorer_caches_are_empty_after_a_generation_job():
    from mmbench.metrics.generation import standard_metrics

    standard_metrics(["a cat sat"], [["the cat sat on the mat"]])
    assert _sacrebleu_cache_entries() > 0  # sacrebleu memoises what it tokenises: the risk is real
    Spy = _spy(GenerationModel, generate=lambda self, samples, **kw: ["the" for _ in samples])
    card = get_card("synth-gen")
    _run(Spy(), load_task_data(card), card)
    assert _sacrebleu_cache_entries() == 0


PID_ADAPTER = '''
import json, os
from mmbench.api import GenerationModel, TrainSchedule


class PidSpy(GenerationModel):
    Config = TrainSchedule

    def setup(self, data, seed):
        import sys
        caches = sum(m.__call__.cache_info().currsize for name, mod in list(sys.modules.items())
                     if name.startswith("sacrebleu.tokenizers.") and mod is not None
                     for m in vars(mod).values() if isinstance(m, type) and hasattr(m.__call__, "cache_info"))
        with open(os.environ["PID_LOG"], "a") as f:
            f.write(json.dumps({"seed": seed, "pid": os.getpid(), "sacrebleu_cache": caches}) + "\\n")

    def train_epoch(self, epoch):
        return 0.0

    def generate(self, samples, **kw):
        return ["the" for _ in samples]
'''


def test_each_seed_of_a_multi_seed_eval_runs_in_a_fresh_process(env, tmp_path, monkeypatch):
    import json
    import os

    from mmbench.cli import main

    path = tmp_path / "pid_spy.py"
    path.write_text(PID_ADAPTER)
    log = tmp_path / "pids.jsonl"
    monkeypatch.setenv("PID_LOG", str(log))
    assert main(["eval", "--model", f"{path}:PidSpy", "--task", "synth-gen", "--seed", "0-2", "--quiet"]) == 0
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["seed"] for r in rows] == [0, 1, 2]
    pids = {r["pid"] for r in rows}
    assert len(pids) == 3 and os.getpid() not in pids
    assert all(r["sacrebleu_cache"] == 0 for r in rows)
    assert len(list(env.results.rglob("*.json"))) == 3
