"""Devices: ``--device`` parsing and refusal, and every adapter putting its modules and tensors on
``self.device``.

CPU-only CI has no second real device, so placement is checked on PyTorch's ``meta`` device, which stands in
for an accelerator: an adapter that builds a module or a tensor without moving it to ``self.device`` leaves it
on the CPU and fails. Frozen-encoder outputs are computed once on the CPU first; the ``meta`` run then reads
them from the (device-independent) cache, as a GPU job reads a cache a CPU job wrote.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmbench.cli import main
from mmbench.config import build_config
from mmbench.devices import check_device_spec, resolve_device, resolve_dtype
from mmbench.errors import ConfigError
from mmbench.models.node_encodings import NodeEncodings
from mmbench.registry import get_model

META = torch.device("meta")
# tensors that stay on the host by design: RNG states (CPU byte tensors), lm-cls's host-side row lookup and the
# statistics it applies to freshly encoded (CPU) prompts
HOST_BY_DESIGN = {"_rng", "row", "mean", "std"}


def placed_tensors(adapter) -> list[tuple[str, torch.Tensor]]:
    """Every tensor the adapter holds directly, in its modules, or in its frozen-encoder tables."""
    out: list[tuple[str, torch.Tensor]] = []
    for name, value in vars(adapter).items():
        if name in HOST_BY_DESIGN:
            continue
        if isinstance(value, torch.Tensor):
            out.append((name, value))
        elif isinstance(value, nn.Module):
            out += [(f"{name}.{n}", t) for n, t in value.named_parameters()]
            out += [(f"{name}.{n}", t) for n, t in value.named_buffers()]
        elif isinstance(value, NodeEncodings):
            out += [(f"{name}.{k}", t) for k, t in vars(value).items() if isinstance(t, torch.Tensor)]
    return out


def setup_on(name: str, data, device: torch.device, **config):
    from mmbench.api import ClassificationTrainingData, GenerationTrainingData

    family = "classification" if isinstance(data, ClassificationTrainingData) else \
        "generation" if isinstance(data, GenerationTrainingData) else "kgc"
    cls = get_model(name, family)
    m = cls(build_config(cls.Config, None, {}, config, name))
    m.device = device
    m.setup(data, 0)
    return m


def assert_on(m, device: torch.device) -> None:
    tensors = placed_tensors(m)
    assert tensors, f"{type(m).__name__} holds no tensors to check"
    wrong = [(n, str(t.device)) for n, t in tensors if t.device.type != device.type]
    assert not wrong, f"{type(m).__name__}: not on {device}: {wrong[:8]}"


# --------------------------------------------------------------------------- the option
def test_device_specs_are_checked_and_cuda_is_refused_without_a_gpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert check_device_spec(" CUDA:1 ") == "cuda:1"
    for bad in ("gpu", "cuda:x", "", "cpu:0", "mps"):
        with pytest.raises(ConfigError, match="--device .*expected auto, cpu, cuda or cuda:N"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        for spec in ("cuda", "cuda:0"):
            with pytest.raises(ConfigError, match="no CUDA device is visible"):
                resolve_device(spec)
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ConfigError, match="dtype='fp8'"):
        resolve_dtype("fp8", torch.device("cpu"))


def test_cli_refuses_a_bad_device(capsys):
    assert main(["eval", "--model", "tucker", "--task", "nations", "--device", "gpu"]) == 2
    assert "--device 'gpu': expected auto, cpu, cuda or cuda:N" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["eval", "--model", "tucker", "--task", "nations", "--device", "cuda"]) == 2
        assert "no CUDA device is visible" in capsys.readouterr().err
    assert main(["sweep", "--models", "tucker", "--tasks", "nations", "--device", "cuda:1", "--no-ray"]) == 2
    assert "Ray assigns each job its GPU" in capsys.readouterr().err


# --------------------------------------------------------------------------- placement, per family
KGC_SMALL = {"num_entities": 60, "num_types": 3, "num_regions": 3, "num_relations": 4, "num_triples": 300,
             "domain_types_per_relation": 2}


@pytest.fixture(scope="module")
def kg_view():
    from mmbench.data.synth_kg import DEFAULTS, generate

    return generate({**DEFAULTS, **KGC_SMALL}, task="synth-small").training_view()


@pytest.mark.parametrize("name,config", [
    ("transe", {"embedding_dim": 8}), ("rotate", {"embedding_dim": 8}), ("distmult", {"dim": 8}),
    ("complex", {"dim": 8}), ("tucker", {"dim": 8, "rel_dim": 4}), ("mm-concat", {"dim": 8, "rel_dim": 4}),
    ("mygo", {"dim": 8, "hidden_dim": 16, "max_vis_tokens": 2, "max_txt_tokens": 2, "visual_codes": 8}),
])
def test_kgc_adapters_place_everything_on_their_device(kg_view, name, config):
    cpu = setup_on(name, kg_view, torch.device("cpu"), **config)
    assert_on(cpu, torch.device("cpu"))
    heads, rels = kg_view.train[:4, 0], kg_view.train[:4, 1]
    cpu.begin_scoring()
    scores = cpu.score_tails(heads, rels)
    cpu.end_scoring()
    assert scores.device.type == "cpu" and scores.shape == (4, kg_view.num_entities)
    assert_on(setup_on(name, kg_view, META, **config), META)


@pytest.fixture(scope="module")
def cls_view():
    from tests.test_classification_baselines import homophilous, view

    texts = [f"item {i} of class {'shoe bag hat'.split()[i % 3]}" for i in range(60)]
    graph, perm = homophilous(n=60, texts=texts)
    import dataclasses
    import functools

    v = view(graph, perm[:30], perm[30:45], perm[45:])
    return dataclasses.replace(v, assemble=functools.partial(v.graph.sample, k=2, max_nodes=6))


@pytest.mark.parametrize("name,config", [
    ("mlp", {"features": "noisy"}), ("gcn", {"features": "noisy"}), ("sage", {"features": "noisy"}),
    ("gat", {"features": "noisy", "hidden": 8, "heads": 2}), ("gcn", {"features": "text"}),
    ("rgcn", {"features": "noisy", "hidden": 8}), ("gcn", {"features": "tfidf", "hidden": 8}),
    ("lm-cls", {"lm": "tiny-llama"}), ("lm-cls", {"lm": "tiny-llama", "mode": "likelihood"}),
    ("labelprop", {}), ("graph4mm", {"lm": "tiny-llama", "qformer_heads": 2, "diffusion_heads": 2}),
])
def test_classification_adapters_place_everything_on_their_device(cls_view, name, config):
    cpu = setup_on(name, cls_view, torch.device("cpu"), **config)
    cpu.begin_scoring()
    scores = cpu.predict(cls_view.test_nodes)
    cpu.end_scoring()
    assert scores.device.type == "cpu" and scores.shape == (len(cls_view.test_nodes), 3)
    meta = setup_on(name, cls_view, META, **config)
    if config.get("mode") == "likelihood":   # nothing trainable: the LM itself must be on the device
        assert all(p.device.type == "meta" for p in meta.lm.parameters())
    else:
        assert_on(meta, META)


@pytest.fixture(scope="module")
def gen_view(tmp_path_factory):
    from tests.test_generation_baselines import TOY, TOY_TARGETS, png, sample, toy_data

    d = tmp_path_factory.mktemp("img")
    with_image = sample("e", "A red square.", [("Neighbour with a picture.", png(d / "n.png", (0, 0, 200)), 1)],
                        image=png(d / "t.png", (200, 0, 0)))
    return toy_data([*TOY, with_image], [*TOY_TARGETS, "red"])


@pytest.mark.parametrize("name,config", [
    ("lm-node", {}), ("lm-subgraph", {"trainable": "lora:r=2,alpha=4"}), ("mmgl", {"trainable": "prefix:n=3"}),
    ("mmgl", {}), ("graph4mm", {"qformer_heads": 2, "diffusion_heads": 2}),
    ("graph4mm", {"variant": "hop-aware", "trainable": "last:1"}),
])
def test_generation_adapters_place_everything_on_their_device(gen_view, name, config):
    cpu = setup_on(name, gen_view, torch.device("cpu"), lm="tiny-llama", **config)
    assert_on(cpu, torch.device("cpu"))
    assert len(cpu.generate(list(gen_view.test), max_new_tokens=3)) == len(gen_view.test)
    assert_on(setup_on(name, gen_view, META, lm="tiny-llama", **config), META)


def test_encoder_cache_is_device_independent(gen_view):
    """Outputs cached by one job are plain CPU tensors that a job on another device reads back."""
    from mmbench.backbones import encode_texts

    values, present = encode_texts(["a", "b", None], device=torch.device("cpu"))
    again, _ = encode_texts(["a", "b", None], device=META)   # a cache hit: nothing runs on the device
    assert again.device.type == "cpu" and torch.equal(again, values) and present.tolist() == [True, True, False]
