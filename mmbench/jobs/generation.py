"""The generation job: train with validation selection (on generated text), decode the test split once."""

from __future__ import annotations

import time

import torch

from mmbench.api import GenerationModel, GenerationTrainingData, GraphSample
from mmbench.data.graph import GraphTaskData
from mmbench.errors import AdapterError, ConfigError
from mmbench.jobs import JobOptions, JobOutcome, selection_summary
from mmbench.metrics.bootstrap import bootstrap_ci
from mmbench.metrics.generation import GenerationScores, clear_scorer_caches, paper_metrics, standard_metrics
from mmbench.progress import Progress
from mmbench.tasks import TaskCard
from mmbench.training import train_with_selection


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


def run_job(model: GenerationModel, data: GraphTaskData, card: TaskCard, seed: int, progress: Progress,
            options: JobOptions) -> JobOutcome:
    p = card.protocol
    protocol = p.get("metric_protocol", "standard")
    max_new = int(p.get("max_new_tokens", 32))
    beams = int(p.get("num_beams", 1))
    key = p.get("selection_metric", card.main_metric)
    limit = int(p.get("valid_limit", 0)) or None
    bs = int(getattr(model.config, "eval_batch_size", 16))
    train, train_targets = assemble(data, "train", progress)
    valid, valid_targets = assemble(data, "valid", progress)
    test, test_targets = assemble(data, "test", progress)
    view = GenerationTrainingData(task=data.task, train=tuple(train), train_targets=tuple(train_targets),
                                  valid=tuple(valid), test=tuple(test), max_new_tokens=max_new)
    model.setup(view, seed)
    check = valid[:limit]

    def validate() -> tuple[float, dict[str, float]]:
        preds = decode(model, check, "valid", max_new, beams, bs, progress)
        metrics = dict(score_texts(preds, valid_targets[: len(check)], protocol))
        return metrics[key], metrics

    if options.checkpoint_state is not None:
        model.load_state_dict(options.checkpoint_state)
    sel = train_with_selection(model, validate if check else None, progress) \
        if options.checkpoint_state is None else None
    t0 = time.perf_counter()
    valid_metrics = (sel.result if sel is not None and sel.result is not None else (validate()[1] if check else {}))
    if options.shards > 1:
        preds = sharded_decode(model, view, seed, test, options.shards, max_new, beams, bs)
    else:
        preds = decode(model, test, "test", max_new, beams, bs, progress)
    scores = score_texts(preds, test_targets, protocol)
    test_metrics = dict(scores)
    if protocol == "standard":  # the paper profile beside it, so numbers can be set next to the paper's
        test_metrics.update({f"paper.{k}": v for k, v in score_texts(preds, test_targets, "paper").items()})
    intervals = bootstrap_ci(scores.resample, scores.n, options.bootstrap_resamples, options.bootstrap_seed) \
        if scores.resample is not None else {}
    samples = [{"id": s.id, "prediction": pr, "reference": rf} for s, pr, rf in zip(test, preds, test_targets,
                                                                                     strict=True)]
    training = {"history": sel.history if sel else [],
                "selection": selection_summary(sel, key) if sel else {"metric": None, "reason": "checkpoint given"},
                "train_seconds": round(sel.train_seconds, 3) if sel else 0.0,
                "eval_seconds": round((sel.eval_seconds if sel else 0.0) + time.perf_counter() - t0, 3)}
    return JobOutcome(
        metrics={"valid": valid_metrics, "test": test_metrics},
        intervals={k: list(v) for k, v in intervals.items()}, training=training,
        protocol={"metric_protocol": protocol, "decoding": "beam" if beams > 1 else "greedy", "num_beams": beams,
                  "max_new_tokens": max_new, "valid_limit": limit, "references_per_sample": 1,
                  "test_shards": options.shards,
                  **({"context_targets": data.graph.meta["context_targets"]}
                     if "context_targets" in data.graph.meta else {}),
                  "bootstrap": {"resamples": options.bootstrap_resamples, "seed": options.bootstrap_seed,
                                "unit": "test sample", "interval": "95% percentile, corpus metrics recomputed"}},
        samples=samples if options.log_samples else None,
        extra={"examples": samples[:5]})
