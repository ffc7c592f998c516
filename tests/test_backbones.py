"""Backbones by local path (tiny random CLIP vision tower, OPT, LLaMA, BERT-style text encoder saved with
``save_pretrained``), their identities and caches, peft trainable policies, and the LM forward/decoding code on
them. Everything goes through the same functions a user's real checkpoint takes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from mmbench import backbones as B
from mmbench.cli import main
from mmbench.errors import ConfigError
from mmbench.models import lm_decode as D
from mmbench.models import lm_utils as U
from mmbench.models.lm_forward import logits_at
from mmbench.models.lm_policies import parse_trainable, prepare_lm


def _tokenizer():
    tok = copy.deepcopy(B.text_tokenizer("minilm"))
    tok.bos_token, tok.eos_token = tok.cls_token, tok.sep_token
    return tok


def save_lm(folder: Path, kind: str, seed: int = 0) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

    tok = _tokenizer()
    ids = dict(vocab_size=len(tok), bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
               pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    if kind == "opt":
        model = OPTForCausalLM(OPTConfig(hidden_size=64, num_hidden_layers=2, ffn_dim=128, num_attention_heads=4,
                                         word_embed_proj_dim=64, max_position_embeddings=512, **ids))
    else:
        model = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=2,
                                             max_position_embeddings=512, **ids))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def save_clip(folder: Path, seed: int = 0, processor: bool = False) -> Path:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    CLIPVisionModel(CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=64, intermediate_size=128,
                                     num_hidden_layers=2, num_attention_heads=4)).save_pretrained(folder)
    if processor:
        CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def save_text_encoder(folder: Path) -> Path:
    from transformers import BertConfig, BertModel

    tok = B.text_tokenizer("minilm")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lms(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lms")
    return {k: save_lm(root / k, k) for k in ("opt", "llama")}


def png(path: Path, color) -> str:
    from PIL import Image

    Image.new("RGB", (20, 12), color).save(path)
    return str(path)


# --------------------------------------------------------------------------- causal LMs by path
@pytest.mark.parametrize("kind", ["opt", "llama"])
def test_lm_by_path_loss_matches_hf_and_decoding_matches_hf_greedy(lms, kind):
    model, tok, ident = B.load_causal_lm(str(lms[kind]))
    assert ident.path == str(lms[kind].resolve()) and ident.kind == "causal-lm" and len(ident.weights) == 16
    prompts = [U.prompt_ids(tok, "the cat sat on the mat"), U.prompt_ids(tok, "hello")]
    b = U.text_batch(tok, prompts, ["a cat", "a longer greeting"])
    assert U.causal_lm_loss(model, b).item() == pytest.approx(model(**U.hf_inputs(b)).loss.item(), rel=1e-5)
    out = D.generate_texts(model, tok, prompts, max_new_tokens=5)
    batch = U.collate([[p] for p in prompts], pad_token_id=U.pad_id(tok), padding_side="left")
    raw = model.generate(**U.hf_inputs(batch), max_new_tokens=5, do_sample=False, pad_token_id=U.pad_id(tok))
    assert out == [D.clean_generation(t) for t in tok.batch_decode(raw[:, batch["input_ids"].shape[1]:],
                                                                   skip_special_tokens=True)]
    assert D.generate_texts(model, tok, prompts, max_new_tokens=5, num_beams=1) == out
    # a beam of width 1 is greedy search
    ids1 = D.beam_ids(model, batch, 5, 1, int(tok.eos_token_id), U.pad_id(tok))
    ids0 = D.greedy_ids(model, batch, 5, int(tok.eos_token_id), U.pad_id(tok))
    assert torch.equal(ids1[:, :ids0.shape[1]], ids0)


def test_identity_follows_weights_not_location(tmp_path, lms):
    a = B.folder_identity("causal-lm", "a", lms["llama"])
    moved = tmp_path / "moved"
    import shutil

    shutil.copytree(lms["llama"], moved)
    assert B.folder_identity("causal-lm", "b", moved).key == a.key            # same config and weights
    other = save_lm(tmp_path / "other", "llama", seed=1)
    assert B.folder_identity("causal-lm", "a", other).key != a.key             # other weights
    assert B.folder_identity("causal-lm", "a", other).config_sha == a.config_sha


def test_names_that_are_not_available_offline_are_refused_with_instructions(tmp_path):
    with pytest.raises(ConfigError) as e:
        B.pretrained_dir("facebook/opt-125m", "LM")
    msg = str(e.value)
    assert "nor in the Hugging Face cache" in msg and "hf download facebook/opt-125m" in msg
    assert B.hub_cache_dir() in msg and "downloads nothing at run time" in msg
    with pytest.raises(ConfigError, match="no such folder"):
        B.pretrained_dir(str(tmp_path / "missing"), "LM")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no config.json"):
        B.pretrained_dir(str(tmp_path / "empty"), "vision encoder")


# --------------------------------------------------------------------------- vision and text encoders by path
def test_clip_vision_by_path_pooled_and_patch_grid(tmp_path):
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPVisionModel

    clip = save_clip(tmp_path / "clip")
    files = [png(tmp_path / "a.png", (200, 10, 10)), None, png(tmp_path / "b.png", (10, 10, 200)),
             str(tmp_path / "missing.png")]
    pooled, present = B.encode_images(files, str(clip))
    grid, _ = B.encode_images(files, str(clip), patches=True)
    assert pooled.shape == (4, 64) and grid.shape == (4, 16, 64) and present.tolist() == [True, False, True, False]
    ref = CLIPVisionModel.from_pretrained(str(clip)).eval()
    proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    with Image.open(files[0]) as img:
        out = ref(pixel_values=proc(images=img.convert("RGB"), return_tensors="pt")["pixel_values"])
    assert torch.allclose(pooled[0], out.pooler_output[0], atol=1e-5)
    assert torch.allclose(grid[0], out.last_hidden_state[0, 1:], atol=1e-2)    # patches are cached in fp16
    assert not pooled[1].any() and not pooled[3].any()
    # another tower (other weights) never shares the cached outputs
    other, _ = B.encode_images(files, str(save_clip(tmp_path / "clip2", seed=1, processor=True)))
    assert not torch.allclose(other[0], pooled[0])
    assert B.vision_encoder(str(clip)).identity.key != B.vision_encoder(str(tmp_path / "clip2")).identity.key


def test_text_encoder_by_path_masked_mean_and_max_length(tmp_path):
    from transformers import AutoModel

    enc_dir = save_text_encoder(tmp_path / "bert")
    texts = ["one two three four five six seven eight nine ten eleven twelve", "short", ""]
    values, present = B.encode_texts(texts, str(enc_dir), max_length=8)
    assert values.shape == (3, 32) and present.tolist() == [True, True, False] and not values[2].any()
    tok = B.text_tokenizer(str(enc_dir))
    model = AutoModel.from_pretrained(str(enc_dir)).eval()
    enc = tok(texts[:2], padding=True, truncation=True, max_length=8, return_tensors="pt")
    assert enc["input_ids"].shape[1] == 8
    with torch.no_grad():
        h = model(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    assert torch.allclose(values[:2], (h * m).sum(1) / m.sum(1), atol=1e-5)
    longer, _ = B.encode_texts(texts, str(enc_dir), max_length=16)
    assert not torch.allclose(longer[0], values[0]) and torch.allclose(longer[1], values[1], atol=1e-6)


def test_smollm2_as_text_encoder_is_the_lm_backbones_base_model():
    """``text_encoder=smollm2``: SmolLM2's own hidden states, masked-mean-pooled (the public Graph4MM code
    encodes neighbour texts with a frozen copy of its LM)."""
    from mmbench.backbones_lm import smollm2_folder

    assert B.text_model_path("smollm2") == str(smollm2_folder())
    values, present = B.encode_texts(["spotted: zebra, lamp and acacia", ""], "smollm2")
    assert values.shape == (2, 576) and present.tolist() == [True, False] and values[0].abs().sum() > 0


# --------------------------------------------------------------------------- peft policies
def test_policy_parsing():
    assert parse_trainable("lora:r=4,alpha=8,targets=q_proj+k_proj,dropout=0.1").targets == ("q_proj", "k_proj")
    assert parse_trainable("prefix:n=7").tokens == 7 and parse_trainable("last:2").layers == 2
    for bad in ("lora:r=0", "lora:rank=4", "prefix:n=0", "prefix:x=1", "lora:r=two", "last:0"):
        with pytest.raises(ConfigError, match="trainable"):
            parse_trainable(bad)


def _batch(tok):
    prompts = [U.prompt_ids(tok, "the cat sat"), U.prompt_ids(tok, "a dog")]
    return U.text_batch(tok, prompts, ["on the mat", "barks"])


@pytest.mark.parametrize("kind", ["opt", "llama"])
def test_lora_trains_exactly_its_parameters_and_round_trips(lms, kind):
    base, tok, _ = B.load_causal_lm(str(lms[kind]))
    model, params = prepare_lm(base, "lora:r=4,alpha=8", seed=0)
    cfg = base.config
    hidden, layers = cfg.hidden_size, cfg.num_hidden_layers
    kv = hidden // cfg.num_attention_heads * getattr(cfg, "num_key_value_heads", cfg.num_attention_heads)
    # q_proj (hidden -> hidden) and v_proj (hidden -> kv) per layer: A (r, in) + B (out, r)
    assert sum(p.numel() for p in params) == layers * 4 * (hidden + hidden + hidden + kv)
    assert all(p.requires_grad for p in params) and all(p.dtype == torch.float32 for p in params)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    state = U.trainable_state(model)
    assert set(state) == {n for n, p in model.named_parameters() if p.requires_grad}
    opt = U.make_optimizer([(params, 1e-2)], 0.0)
    U.train_step(model, _batch(tok), opt, params, 1.0)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= set(state) and all("lora_" in n for n in changed)
    U.load_trainable_state(model, state)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


@pytest.mark.parametrize("kind", ["opt", "llama"])
def test_prefix_tuning_loss_decoding_and_round_trip(lms, kind):
    base, tok, _ = B.load_causal_lm(str(lms[kind]))
    model, params = prepare_lm(base, "prefix:n=3", seed=0)
    cfg = base.config
    kv = cfg.hidden_size // cfg.num_attention_heads * getattr(cfg, "num_key_value_heads", cfg.num_attention_heads)
    assert sum(p.numel() for p in params) == 3 * cfg.num_hidden_layers * 2 * kv
    b = _batch(tok)
    # our prefix path equals peft's own forward (its loss is HF's over the same target-only labels)
    assert U.causal_lm_loss(model, b).item() == pytest.approx(model(**U.hf_inputs(b)).loss.item(), rel=1e-5)
    prompts = [U.prompt_ids(tok, "the cat sat on the mat"), U.prompt_ids(tok, "hello")]
    left = U.collate([[p] for p in prompts], pad_token_id=U.pad_id(tok), padding_side="left")
    ours = D.greedy_ids(model, left, 4, int(tok.eos_token_id), U.pad_id(tok))
    theirs = model.generate(**U.hf_inputs(left), max_new_tokens=4, do_sample=False, pad_token_id=U.pad_id(tok))
    theirs = theirs[:, left["input_ids"].shape[1]:]
    assert ours.tolist() == theirs[:, :ours.shape[1]].tolist()
    # soft-token prompts work with a prefix too (peft's generate refuses inputs_embeds here)
    emb = U.collate([[p] for p in prompts], pad_token_id=U.pad_id(tok), padding_side="left",
                    embed=base.get_input_embeddings())
    assert D.generate_texts(model, tok, emb, 4) == D.generate_texts(model, tok, prompts, 4)
    state = U.trainable_state(model)
    assert list(state) == ["prompt_encoder.default.embedding.weight"]
    opt = U.make_optimizer([(params, 1e-1)], 0.0)
    model.eval()                                              # no dropout in the comparisons
    before = U.causal_lm_loss(model, b).item()
    U.train_step(model, b, opt, params, 1.0)
    model.eval()
    assert U.causal_lm_loss(model, b).item() != before
    U.load_trainable_state(model, state)
    assert U.causal_lm_loss(model, b).item() == pytest.approx(before, rel=1e-6)


def test_logits_at_positions_equal_full_logits(lms):
    model, tok, _ = B.load_causal_lm(str(lms["llama"]))
    b = _batch(tok)
    rows, cols = torch.tensor([0, 1, 1]), torch.tensor([0, 2, 3])
    full = model(**U.hf_inputs({k: v for k, v in b.items() if k != "labels"})).logits
    assert torch.allclose(logits_at(model, b, rows, cols), full[rows, cols], atol=1e-5)


def test_bf16_on_cpu_runs_with_fp32_trainable_parameters(lms):
    base, tok, _ = B.load_causal_lm(str(lms["llama"]), dtype=torch.bfloat16)
    model, params = prepare_lm(base, "last:1", dtype=torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in params)
    assert any(p.dtype == torch.bfloat16 for p in model.parameters() if not p.requires_grad)
    loss = U.causal_lm_loss(model, _batch(tok))
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    loss.backward()
    assert all(p.grad is not None for p in params)


def test_label_log_likelihoods_match_a_direct_computation(lms):
    model, tok, _ = B.load_causal_lm(str(lms["llama"]))
    prompts = [[U.prompt_ids(tok, "a red thing")], [torch.randn(2, 64), U.prompt_ids(tok, "blue")]]
    labels = [U.token_ids(tok, " red apple"), U.token_ids(tok, " sky")]
    got = D.label_log_likelihoods(model, prompts, labels, pad_token_id=U.pad_id(tok), batch_size=2)
    emb = model.get_input_embeddings()
    for i, parts in enumerate(prompts):
        for j, lab in enumerate(labels):
            b = U.collate([parts], [lab], pad_token_id=U.pad_id(tok), embed=emb)
            rows, cols, ids = U.target_positions(b["labels"])
            lp = torch.log_softmax(logits_at(model, b, rows, cols), -1)[torch.arange(len(ids)), ids]
            assert got[i, j].item() == pytest.approx(lp.mean().item(), abs=1e-5)


# --------------------------------------------------------------------------- end to end
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["llama", "opt"])
def test_eval_lm_subgraph_on_synth_gen_with_an_lm_loaded_by_path(lms, env, kind, capsys):
    rc = main(["eval", "--model", "lm-subgraph", "--task", "synth-gen", "--device", "cpu", "--quiet",
               "--set", f"lm={lms[kind]}", "--set", "epochs=1", "--set", "max_prompt_tokens=64",
               "--set", "batch_size=16", "--set", "eval_batch_size=64"])
    out = capsys.readouterr().out
    assert rc == 0, out
    rec = json.loads(next(env.results.glob("synth-gen/lm-subgraph/*.json")).read_text())
    assert rec["model"]["backbones"]["lm"]["path"] == str(lms[kind].resolve())
    assert rec["device"]["device"] == "cpu" and rec["device"]["dtype"] == "fp32"
    assert "cider" in rec["metrics"]["test"] and "test" in out and "cider" in out
