"""The generation family: free decoding scored on generated text (``mmbench.jobs.run_job`` runs the job)."""

from __future__ import annotations

from typing import Any

import torch

from mmbench.api import GenerationModel, GenerationTrainingData, GraphSample
from mmbench.data.graph import GraphTaskData
from mmbench.errors import AdapterError, ConfigError
from mmbench.jobs import FamilyJob, JobOptions, Scored, register_family
from mmbench.metrics.bootstrap import bootstrap_ci
from mmbench.metrics.generation import GenerationScores, clear_scorer_caches, paper_metrics, standard_metrics
from mmbench.progress import Progress
from mmbench.tasks import TaskCard


def assemble(data: GraphTaskData, split: str, progress: Progress) -> tuple[list[GraphSample], list[str]]:
    """Samples (inputs only) and their targets for one split; targets stay with the harness."""
    nodes = data.graph.splits.get(split)
    if nodes is None:
        return [], []
    targets = data.graph.targets
    if targets is None:
        raise ConfigError(f"task {data.task}: a generation task needs node targets")
    bar = progress.bar(len(nodes), f"assemble {split}", unit="sample")
    samples = []
    for v in nodes.tolist():
        samples.append(data.assemble(v))
        bar.update()
    bar.close()
    return samples, [targets[v] or "" for v in nodes.tolist()]


def decode(model: GenerationModel, samples: list[GraphSample], split: str, max_new_tokens: int, num_beams: int,
           batch_size: int, progress: Progress) -> list[str]:
    out: list[str] = []
    model.begin_scoring()
    bar = progress.bar(len(samples), f"generate {split}", unit="sample")
    try:
        for b, s in enumerate(range(0, len(samples), batch_size)):
            chunk = samples[s:s + batch_size]
            texts = model.generate(chunk, max_new_tokens=max_new_tokens, num_beams=num_beams)
            if not isinstance(texts, list) or len(texts) != len(chunk) or not all(isinstance(t, str) for t in texts):
                raise AdapterError(f"{type(model).__name__}.generate (batch {b}, {split} split): expected a list "
                                   f"of {len(chunk)} strings, got {type(texts).__name__} of "
                                   f"{len(texts) if hasattr(texts, '__len__') else '?'}")
            out += texts
            bar.update(len(chunk))
    finally:
        model.end_scoring()
        bar.close()
    return out


def _decode_shard(model_cls: type, config: object, view: GenerationTrainingData, seed: int, state: dict,
                  samples: list[GraphSample], max_new_tokens: int, num_beams: int, batch_size: int,
                  device: str = "auto") -> list[str]:
    """One shard: rebuild the adapter on ``device`` (a spec: a Ray shard resolves its own GPU), load the
    selected state, decode its samples."""
    from mmbench.devices import resolve_device

    model = model_cls(config)
    model.device = resolve_device(device)
    model.setup(view, seed)
    model.load_state_dict(state)
    return decode(model, samples, "test", max_new_tokens, num_beams, batch_size, Progress(quiet=True))


def sharded_decode(model: GenerationModel, view: GenerationTrainingData, seed: int, samples: list[GraphSample],
                   shards: int, max_new_tokens: int, num_beams: int, batch_size: int) -> list[str]:
    """Decode ``samples`` in ``shards`` interleaved parts (sample i goes to shard i % shards) and merge the
    predictions back in order. Inside a running Ray session each shard is a Ray task (one GPU each when the
    cluster has GPUs); otherwise the shards run one after another here. Either way every shard rebuilds the
    adapter from its config and the selected state, so the merged predictions equal an unsharded run's."""
    parts = [samples[i::shards] for i in range(shards)]
    state = {k: v.cpu() if hasattr(v, "cpu") else v for k, v in model.state_dict().items()}
    args = (type(model), model.config, view, seed, state)
    try:
        import ray
        on_ray = ray.is_initialized()
    except ImportError:
        on_ray = False
    on_gpu = getattr(model, "device", torch.device("cpu")).type == "cuda"
    if on_ray:
        gpus = 1 if on_gpu and ray.cluster_resources().get("GPU", 0) >= 1 else 0
        remote = ray.remote(_decode_shard).options(num_gpus=gpus, num_cpus=1)
        refs = [ray.put(a) for a in args]
        spec = "auto" if gpus else "cpu"
        outs = ray.get([remote.remote(*refs, part, max_new_tokens, num_beams, batch_size, spec) for part in parts])
    else:
        here = str(getattr(model, "device", "cpu"))
        outs = [_decode_shard(*args, part, max_new_tokens, num_beams, batch_size, here) for part in parts]
    merged: list[str] = [""] * len(samples)
    for i, out in enumerate(outs):
        merged[i::shards] = out
    return merged


def score_texts(preds: list[str], refs: list[str], protocol: str) -> GenerationScores:
    """The card's metric profile; the scorers' caches are emptied afterwards (``clear_scorer_caches``)."""
    refs_lists = [[r] for r in refs]
    try:
        return paper_metrics(preds, refs_lists) if protocol == "paper" else standard_metrics(preds, refs_lists)
    finally:
        clear_scorer_caches()


@register_family("generation")
class GenerationJob(FamilyJob):
    """Free decoding of each sample's target text, scored by the card's metric profile; the standard profile
    also records the paper profile (``paper.*`` keys) for the test split."""

    def __init__(self, data: GraphTaskData, card: TaskCard, options: JobOptions, progress: Progress):
        super().__init__(data, card, options, progress)
        p = card.protocol
        self.metric_protocol = p.get("metric_protocol", "standard")
        self.max_new = int(p.get("max_new_tokens", 32))
        self.beams = int(p.get("num_beams", 1))
        self.limit = int(p.get("valid_limit", 0)) or None
        self.inputs: dict[str, list[GraphSample]] = {}
        self.targets: dict[str, list[str]] = {}
        for split in ("train", "valid", "test"):
            self.inputs[split], self.targets[split] = assemble(data, split, progress)
        self._view = GenerationTrainingData(
            task=data.task, train=tuple(self.inputs["train"]), train_targets=tuple(self.targets["train"]),
            valid=tuple(self.inputs["valid"]), test=tuple(self.inputs["test"]), max_new_tokens=self.max_new)

    @property
    def selection_key(self) -> str:
        return self.card.protocol.get("selection_metric", self.card.main_metric)

    @property
    def view(self) -> GenerationTrainingData:
        return self._view

    def small_view(self) -> GenerationTrainingData:
        """16 training samples, 4 validation and 4 test samples."""
        v = self._view
        return GenerationTrainingData(task=v.task, train=v.train[:16], train_targets=v.train_targets[:16],
                                      valid=v.valid[:4], test=v.test[:4], max_new_tokens=v.max_new_tokens)

    def scored_inputs(self, split: str) -> list[GraphSample]:
        """The samples a split's scoring decodes: validation checks decode the first ``valid_limit``."""
        return self.inputs[split][: self.limit] if split == "valid" else self.inputs[split]

    def has_split(self, split: str) -> bool:
        return len(self.scored_inputs(split)) > 0

    def score(self, model: GenerationModel, split: str) -> Scored:
        samples = self.scored_inputs(split)
        refs = self.targets[split][: len(samples)]
        bs = int(getattr(model.config, "eval_batch_size", 16))
        if split == "test" and self.options.shards > 1:
            preds = sharded_decode(model, self._view, self.seed, samples, self.options.shards, self.max_new,
                                   self.beams, bs)
        else:
            preds = decode(model, samples, split, self.max_new, self.beams, bs, self.progress)
        scores = score_texts(preds, refs, self.metric_protocol)
        metrics = dict(scores)
        if split == "test" and self.metric_protocol == "standard":  # the paper profile beside it
            metrics.update({f"paper.{k}": v for k, v in score_texts(preds, refs, "paper").items()})
        return Scored(metrics, (preds, scores))

    def probe(self, model: GenerationModel) -> tuple[Any, str]:
        samples = list(self._view.valid or self._view.test)[:2]
        texts = decode(model, samples, "valid", self.max_new, 1, 2, self.progress)
        return texts, f"generate gives {len(texts)} strings, e.g. {texts[0][:60]!r}"

    def intervals(self, test: Scored) -> dict[str, list[float]]:
        _, scores = test.detail
        if scores.resample is None:
            return {}
        o = self.options
        return {k: list(v) for k, v in bootstrap_ci(scores.resample, scores.n, o.bootstrap_resamples,
                                                     o.bootstrap_seed).items()}

    def protocol(self, test: Scored) -> dict[str, Any]:
        meta = self.data.graph.meta
        return {"metric_protocol": self.metric_protocol, "decoding": "beam" if self.beams > 1 else "greedy",
                "num_beams": self.beams, "max_new_tokens": self.max_new, "valid_limit": self.limit,
                "references_per_sample": 1, "test_shards": self.options.shards,
                **({"context_targets": meta["context_targets"]} if "context_targets" in meta else {}),
                "bootstrap": {**self.bootstrap_protocol("test sample"),
                              "interval": "95% percentile, corpus metrics recomputed"}}

    def samples(self, test: Scored) -> list[dict[str, Any]]:
        preds, _ = test.detail
        return [{"id": s.id, "prediction": pr, "reference": rf}
                for s, pr, rf in zip(self.inputs["test"], preds, self.targets["test"], strict=True)]

    def extra(self, test: Scored) -> dict[str, Any]:
        return {"examples": self.samples(test)[:5]}
