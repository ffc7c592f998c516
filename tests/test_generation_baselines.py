"""LM generation helpers (mmbench.models.lm_utils) and the lm-node, lm-subgraph and mmgl adapters, on the
random 2-layer ``tiny-llama`` (SmolLM2's tokenizer) with handmade samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import write_card

from baselines.lm_gen import LMGenConfig, LMNode, LMSubgraph
from baselines.mmgl import MMGL, MMGLConfig, laplacian_pe
from mmbench.api import GenerationTrainingData, GraphSample, SampleNode
from mmbench.backbones import causal_lm
from mmbench.errors import ConfigError
from mmbench.models import lm_decode as D
from mmbench.models import lm_utils as U


@pytest.fixture(autouse=True)
def lm(env):
    return causal_lm("tiny-llama")


def norm(tok, text: str) -> str:
    """``text`` as the tokenizer round-trips it (tiny-llama's WordPiece lowercases and respaces)."""
    return tok.decode(tok(text, add_special_tokens=False)["input_ids"])


def png(path: Path, color: tuple[int, int, int]) -> str:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)
    return str(path)


def chain(n: int) -> torch.Tensor:
    """Undirected path 0 - 1 - ... - n-1 as a (2, 2(n-1)) edge index."""
    a = torch.arange(n - 1)
    return torch.stack([torch.cat([a, a + 1]), torch.cat([a + 1, a])])


def sample(sid: str, target: str | None, neighbours: list[tuple[str | None, str | None, int]] = (),
           image: str | None = None) -> GraphSample:
    nodes = (SampleNode(target, image, "section", 0),
             *(SampleNode(t, im, "section" if t else "image", hop) for t, im, hop in neighbours))
    ei = chain(len(nodes)) if len(nodes) > 1 else torch.zeros(2, 0, dtype=torch.long)
    return GraphSample(id=sid, nodes=nodes, edge_index=ei, edge_type=torch.zeros(ei.shape[1], dtype=torch.long))


TOY = [sample("a", "The cat sat on the mat.", [("A page about cats.", None, 1)]),
       sample("b", "Dogs bark loudly at night.", [("A page about dogs.", None, 1), ("Night is dark.", None, 2)]),
       sample("c", "Birds fly south in winter."),
       sample("d", "Fish swim in the sea.", [("Oceans are big.", None, 1)])]
TOY_TARGETS = ["cats sit", "dogs bark", "birds fly", "fish swim"]


def toy_data(train=TOY, targets=TOY_TARGETS) -> GenerationTrainingData:
    return GenerationTrainingData(task="toy", train=tuple(train), train_targets=tuple(targets),
                                  valid=tuple(train[:2]), test=tuple(train[2:]))


# --------------------------------------------------------------------------- lm_utils
def test_batch_labels_mask_prompt_and_padding(lm):
    _, tok = lm
    prompts = [U.prompt_ids(tok, "the cat sat on the mat"), U.prompt_ids(tok, "hello")]
    assert tok.decode(prompts[0]) == norm(tok, "the cat sat on the mat\nSummary:")
    b = U.text_batch(tok, prompts, ["a cat", "a much longer greeting here"])
    ids, mask, labels = b["input_ids"], b["attention_mask"], b["labels"]
    for i, (p, t) in enumerate(zip(prompts, ["a cat", "a much longer greeting here"], strict=True)):
        tgt = U.target_ids(tok, t)
        assert tgt[-1] == tok.eos_token_id and tok.decode(tgt[:-1]).strip() == norm(tok, t)
        n = len(p) + len(tgt)
        assert ids[i, :n].tolist() == p + tgt                          # right-padded
        assert mask[i].tolist() == [1] * n + [0] * (ids.shape[1] - n)
        assert labels[i].tolist() == [-100] * len(p) + tgt + [-100] * (ids.shape[1] - n)
    assert (mask[0] == 0).sum() == 0 and (mask[1] == 0).sum() > 0
    gen = U.collate([[p] for p in prompts], pad_token_id=U.pad_id(tok), padding_side="left")
    assert "labels" not in gen and gen["attention_mask"][1].tolist()[-len(prompts[1]):] == [1] * len(prompts[1])
    assert gen["input_ids"][1, -len(prompts[1]):].tolist() == prompts[1] and gen["attention_mask"][1, 0] == 0
    # prompts are cut from the end of the context, the suffix kept
    short = U.prompt_ids(tok, "one two three four five six seven eight", max_tokens=6)
    assert len(short) == 6 and tok.decode(short).endswith(norm(tok, "\nSummary:"))


def test_soft_token_batch_and_target_only_loss(lm):
    model, tok = lm
    emb = model.get_input_embeddings()
    soft = [torch.randn(3, 64), torch.randn(5, 64)]
    p = [U.prompt_ids(tok, "a b"), U.prompt_ids(tok, "c")]
    tgt = [U.target_ids(tok, "x y"), U.target_ids(tok, "z")]
    b = U.collate([[soft[0], p[0]], [soft[1], p[1]]], tgt, pad_token_id=U.pad_id(tok), embed=emb)
    x = b["inputs_embeds"]
    assert x.shape == (2, max(3 + len(p[0]) + len(tgt[0]), 5 + len(p[1]) + len(tgt[1])), 64)
    assert torch.equal(x[0, :3], soft[0]) and torch.equal(x[1, :5], soft[1])
    assert torch.equal(x[0, 3:3 + len(p[0])], emb(torch.tensor(p[0])))
    assert b["labels"][0].tolist()[:3 + len(p[0]) + len(tgt[0])] == [-100] * (3 + len(p[0])) + tgt[0]
    # the loss is the mean cross-entropy over target positions only, as HF computes with ignore_index
    loss = U.causal_lm_loss(model, b)
    logits = model(inputs_embeds=x, attention_mask=b["attention_mask"]).logits[:, :-1]
    lab = b["labels"][:, 1:]
    keep = lab != -100
    assert keep.sum() == len(tgt[0]) + len(tgt[1])
    ref = torch.nn.functional.cross_entropy(logits[keep], lab[keep])
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert loss.item() == pytest.approx(model(**U.hf_inputs(b)).loss.item(), rel=1e-5)
    with pytest.raises(ValueError, match="soft tokens need"):
        U.collate([[soft[0], p[0]]], pad_token_id=0)


def test_generate_returns_the_continuation_deterministically(lm):
    model, tok = lm
    prompts = [U.prompt_ids(tok, "the cat sat on the mat"), U.prompt_ids(tok, "hello")]
    out = D.generate_texts(model, tok, prompts, max_new_tokens=6)
    assert len(out) == 2 and all(isinstance(t, str) and t for t in out)
    # continuation only: what generate appended after the (left-padded) prompt, decoded and cleaned
    batch = U.collate([[p] for p in prompts], pad_token_id=U.pad_id(tok), padding_side="left")
    raw = model.generate(**U.hf_inputs(batch), max_new_tokens=6, do_sample=False, pad_token_id=U.pad_id(tok))
    new = raw[:, batch["input_ids"].shape[1]:]
    assert out == [D.clean_generation(t) for t in tok.batch_decode(new, skip_special_tokens=True)]
    assert out == D.generate_texts(model, tok, prompts, max_new_tokens=6)                    # deterministic
    assert out == [D.generate_texts(model, tok, [p], 6)[0] for p in prompts]                 # padding-invariant
    # the same prompts as inputs_embeds: HF returns only the new tokens, we get the same texts
    emb = U.collate([[p] for p in prompts], pad_token_id=U.pad_id(tok), padding_side="left",
                    embed=model.get_input_embeddings())
    assert D.generate_texts(model, tok, emb, max_new_tokens=6) == out
    beams = D.generate_texts(model, tok, emb, max_new_tokens=6, num_beams=3)
    assert len(beams) == 2 and beams == D.generate_texts(model, tok, prompts, 6, num_beams=3)
    assert D.clean_generation("  first line \n second") == "first line"
    with pytest.raises(ValueError, match="left-padded"):
        D.generate_texts(model, tok, U.collate([[p] for p in prompts], pad_token_id=2), 4)


def test_trainable_policies(lm):
    import copy

    model = copy.deepcopy(lm[0])
    assert len(U.apply_trainable(model, "all")) == len(list(model.parameters()))
    assert U.apply_trainable(model, "none") == []
    params = U.apply_trainable(model, "last:1")
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(n.startswith(("model.layers.1.", "model.norm.")) for n in names)
    assert "model.norm.weight" in names and len(params) == len(names)
    for bad in ("last:0", "first:2", "some"):
        with pytest.raises(ConfigError, match="trainable"):
            U.parse_trainable(bad)


# --------------------------------------------------------------------------- lm-node / lm-subgraph
def test_training_steps_reduce_the_loss():
    m = LMNode(LMGenConfig(lm="tiny-llama", trainable="all", lr=3e-3, batch_size=4))
    m.setup(toy_data(), seed=0)
    losses = [m.train_epoch(e) for e in range(1, 6)]
    assert losses[-1] < losses[0] - 0.5, losses
    assert m.num_parameters() == sum(p.numel() for p in lm_model_params())


def lm_model_params():
    return list(causal_lm("tiny-llama")[0].parameters())


def test_node_prompt_ignores_neighbours_subgraph_includes_them():
    node, sub = (cls(LMGenConfig(lm="tiny-llama", epochs=0)) for cls in (LMNode, LMSubgraph))
    for m in (node, sub):
        m.setup(toy_data(), seed=0)
    s1 = sample("x", "Target text.", [("Near neighbour.", None, 1), ("Far neighbour.", None, 2)])
    s2 = sample("x", "Target text.", [("Other words.", None, 1), ("More words.", None, 2)])
    tok = node.tokenizer
    assert node.prompt_text(s1) == node.prompt_text(s2) == norm(tok, "Target text.\nSummary:")
    assert sub.prompt_text(s1) == norm(tok, "Target text.\nContext:\n[section] Near neighbour.\n[section] Far "
                                            "neighbour.\nSummary:")
    assert sub.prompt_text(s2) != sub.prompt_text(s1)
    # over budget: the farthest neighbour goes first (hop, then sample position); the order is kept
    s3 = sample("y", "Target text.", [("Far away words here.", None, 2), ("Near words here.", None, 1)])
    full = len(sub.prompt_ids(s3))
    sub.config.max_prompt_tokens = full - 2
    text = sub.prompt_text(s3)
    assert norm(tok, "Near words here.") in text and norm(tok, "Far away") not in text
    assert len(sub.prompt_ids(s3)) <= full - 2
    sub.config.max_prompt_tokens = 5
    assert sub.prompt_text(s3).endswith(norm(tok, "\nSummary:")) and len(sub.prompt_ids(s3)) == 5
    out = sub.generate([s1, s3], max_new_tokens=4)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)


def test_lm_state_dict_round_trip():
    m = LMSubgraph(LMGenConfig(lm="tiny-llama", trainable="last:1", lr=1e-2, batch_size=2))
    m.setup(toy_data(), seed=0)
    state = m.state_dict()
    assert state and all(k.startswith(("model.layers.1.", "model.norm.")) for k in state)
    before = m.generate(TOY, max_new_tokens=5)
    logits_before = m.module(torch.tensor([[5, 6, 7]])).logits
    m.train_epoch(1)
    assert not torch.allclose(m.module(torch.tensor([[5, 6, 7]])).logits, logits_before)
    m.load_state_dict(state)
    assert torch.equal(m.module(torch.tensor([[5, 6, 7]])).logits, logits_before)
    assert m.generate(TOY, max_new_tokens=5) == before
    # the backbone's shared model object is untouched by fine-tuning (it stays frozen; its weights: below)
    assert not any(p.requires_grad for p in lm_model_params())
    fresh = LMSubgraph(LMGenConfig(lm="tiny-llama", trainable="last:1"))
    fresh.setup(toy_data(), seed=0)
    assert fresh.generate(TOY, max_new_tokens=5) == before


# --------------------------------------------------------------------------- mmgl
def test_laplacian_pe():
    ei = chain(4)
    pe = laplacian_pe(ei, 4, 12)
    assert pe.shape == (4, 12) and torch.equal(pe[:, 3:], torch.zeros(4, 9))
    assert torch.allclose(pe[:, :3].t() @ pe[:, :3], torch.eye(3), atol=1e-5)   # orthonormal eigenvectors
    a = torch.zeros(4, 4)
    a[ei[0], ei[1]] = 1
    d = a.sum(1).rsqrt()
    lap = torch.eye(4) - d[:, None] * a * d[None, :]
    ratios = (lap @ pe[:, :3]) / pe[:, :3]
    lam = ratios[pe[:, :3].abs() > 1e-3]
    assert lam.min() > 1e-3                                                       # the trivial one is skipped
    assert torch.equal(laplacian_pe(ei, 4, 12), pe)                               # evaluation: no flips
    g = torch.Generator().manual_seed(0)
    flipped = [laplacian_pe(ei, 4, 12, g) for _ in range(8)]
    assert all(torch.equal(f.abs(), pe.abs()) for f in flipped)
    assert any(not torch.equal(f, pe) for f in flipped)
    assert torch.equal(laplacian_pe(torch.zeros(2, 0, dtype=torch.long), 1, 12), torch.zeros(1, 12))


@pytest.fixture
def mm_samples(tmp_path):
    red, blue, green = (png(tmp_path / "img" / f"{n}.png", c) for n, c in
                        (("r", (255, 0, 0)), ("b", (0, 0, 255)), ("g", (0, 255, 0))))
    a = sample("a", "A red square.", [("Neighbour with a picture.", blue, 1), ("Only words.", None, 2)], image=red)
    b = sample("b", "Plain text.", [("Just a neighbour.", None, 1)])
    c = sample("c", "Green stuff.", [(None, green, 1), ("Text.", None, 1)])
    d = sample("d", "Nothing around.")
    return [a, b, c, d]


def mmgl(samples, **kw) -> MMGL:
    m = MMGL(MMGLConfig(lm="tiny-llama", **kw))
    m.setup(GenerationTrainingData(task="toy", train=tuple(samples), train_targets=("red", "plain", "green", "none"),
                                   valid=(), test=()), seed=0)
    return m


def test_mmgl_soft_tokens_and_generation(mm_samples):
    m = mmgl(mm_samples)
    tokens, mask = m.soft_tokens(mm_samples)
    # a: neighbour 1 text + image, neighbour 2 text, target image; b: 1 text; c: image, text; d: none
    assert tokens.shape == (4, 16, 64) and mask.sum(1).tolist() == [16, 4, 8, 0]
    assert not tokens[~mask].any()
    assert [k for k, _, _ in m._items(mm_samples[0])] == ["text", "image", "text", "image"]
    assert [j for _, _, j in m._items(mm_samples[0])] == [1, 1, 2, 0]
    # neighbour 1's text tokens: its MiniLM row through text_proj plus its Laplacian PE through lpe_proj
    net = m.module
    row = m.enc.text_row("Neighbour with a picture.")
    pe = m.positional_encodings(mm_samples[0], training=False)
    expect = (net.text_proj(m.enc.text_table[row]) + net.lpe_proj(pe[1])).view(4, 64)
    assert torch.allclose(tokens[0, :4], expect, atol=1e-6)
    out = m.generate(mm_samples, max_new_tokens=5)
    assert len(out) == 4 and all(isinstance(t, str) for t in out)
    assert out == [m.generate([s], max_new_tokens=5)[0] for s in mm_samples]
    assert len(m.generate(mm_samples[:2], max_new_tokens=5, num_beams=2)) == 2
    # training flips PE signs (the soft tokens change), evaluation does not
    t_eval = m.soft_tokens(mm_samples[:1])[0]
    assert torch.equal(t_eval, m.soft_tokens(mm_samples[:1])[0])
    assert any(not torch.allclose(m.soft_tokens(mm_samples[:1], training=True)[0], t_eval) for _ in range(6))
    # caps: one image slot, taken by the target's own image; no text neighbours at all
    capped = mmgl(mm_samples, max_image_neighbors=1, use_text=False, position_encoding="none")
    assert [k for k, _, _ in capped._items(mm_samples[0])] == ["image"] and capped.module.text_proj is None
    assert capped.soft_tokens(mm_samples)[1].sum(1).tolist() == [4, 0, 4, 0]


def test_mmgl_trains_and_state_dict_round_trip(mm_samples):
    m = mmgl(mm_samples, trainable="none", adapter_lr=1e-2, batch_size=4)
    state = m.state_dict()
    assert set(state) == {f"{p}.{w}" for p in ("text_proj", "image_proj", "lpe_proj") for w in ("weight", "bias")}
    lm_total = sum(p.numel() for p in lm_model_params())
    assert m.num_parameters() == lm_total + sum(v.numel() for v in state.values())
    before = m.soft_tokens(mm_samples)[0]
    gen_before = m.generate(mm_samples, max_new_tokens=5)
    twin = mmgl(mm_samples, trainable="none", adapter_lr=1e-2, batch_size=4)   # same seed: same model
    assert torch.equal(twin.soft_tokens(mm_samples)[0], before)
    losses = [m.train_epoch(e) for e in (1, 2, 3)]
    assert losses[-1] < losses[0]
    assert [twin.train_epoch(e) for e in (1, 2, 3)] == losses                    # deterministic training
    assert not torch.allclose(m.soft_tokens(mm_samples)[0], before)
    m.load_state_dict(state)
    assert torch.equal(m.soft_tokens(mm_samples)[0], before)
    assert m.generate(mm_samples, max_new_tokens=5) == gen_before
    with_lm = mmgl(mm_samples, trainable="last:1")
    assert any(k.startswith("lm.model.layers.1.") for k in with_lm.state_dict())


# --------------------------------------------------------------------------- end to end
def test_eval_lm_subgraph_end_to_end(env, tmp_path):
    from mmbench.cli import main

    d = tmp_path / "graphs" / "wiki"
    png(d / "images" / "p.png", (200, 10, 10))
    nodes = [{"id": "page", "text": "Page: Lisbon, capital of Portugal.", "kind": "page", "image": "images/p.png"}]
    topics = ["history", "climate", "food", "music", "trams", "bridges", "parks", "museums"]
    nodes += [{"id": f"s{i}", "text": f"A section about the {t} of the city.", "target": f"Lisbon {t} is famous.",
               "kind": "section"} for i, t in enumerate(topics)]
    (d / "nodes.jsonl").write_text("".join(json.dumps(n) + "\n" for n in nodes))
    (d / "edges.tsv").write_text("".join(f"page\ts{i}\n" for i in range(len(topics))) + "s0\ts1\n")
    (d / "split.json").write_text(json.dumps({"train": ["s0", "s1", "s2", "s3"], "valid": ["s4", "s5"],
                                              "test": ["s6", "s7"]}))
    card = write_card(tmp_path / "cards", {
        "name": "tiny-wiki", "version": 1, "family": "generation", "description": "tiny section summaries",
        "dataset": {"loader": "folder", "path": "../graphs/wiki", "edge_types": ["text-text"]},
        "splits": ["train", "valid", "test"], "metrics": ["bleu4", "rouge_l", "cider"], "main_metric": "cider",
        "protocol": {"selection_metric": "cider", "max_new_tokens": 6, "bootstrap_resamples": 50}})
    rc = main(["eval", "--model", "lm-subgraph", "--task", str(card), "--set", "lm=tiny-llama", "--set", "epochs=1",
               "--set", "batch_size=2", "--quiet"])
    assert rc == 0
    [path] = sorted((env.results / "tiny-wiki" / "lm-subgraph").glob("*.json"))
    rec = json.loads(path.read_text())
    test = rec["metrics"]["test"]
    assert {"bleu4", "cider", "rouge_l", "paper.bleu4"} <= set(test)
    assert 0 <= test["bleu4"] <= 1 and test["cider"] >= 0
    assert {"cider", "bleu4"} <= set(rec["intervals"])
    assert all(lo <= hi for lo, hi in (rec["intervals"][k] for k in ("cider", "bleu4")))
    assert rec["model"]["config"]["lm"] == "tiny-llama" and rec["model"]["details"]["trainable"] == "last:4"
    assert rec["model"]["num_parameters"] == sum(p.numel() for p in lm_model_params())
    assert [h["epoch"] for h in rec["training"]["history"]] == [1] and "valid" in rec["training"]["history"][0]
    assert rec["protocol"]["decoding"] == "greedy" and len(rec["examples"]) == 2
