"""VW-LMM (mmbench/models/vwlmm.py): the visual-word KL on a hand-checked vocabulary, image-position masking and
batchmean, PIF, the loss with weight 0, gradients, and end-to-end runs with tiny models loaded by path."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import FIXTURES, card_raw, write_card
from test_backbones import save_clip, save_lm
from test_generation_baselines import png, sample, toy_data

from mmbench.cli import main
from mmbench.config import build_config
from mmbench.errors import ConfigError
from mmbench.models import lm_utils
from mmbench.models.lm_forward import logits_at
from mmbench.models.vwlmm import VWLMMConfig, VWLMMGenerator, pool_grid, pseudo_image_features, visual_word_kl


def test_kl_on_a_hand_checked_vocabulary():
    # one image position, vocabulary of 2: p_vw = (0.5, 0.5), p_mm = softmax(log 3, 0) = (0.75, 0.25)
    vm = torch.tensor([[0.0, 0.0]])
    mm = torch.tensor([[math.log(3.0), 0.0]])
    want = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert visual_word_kl(mm, vm).item() == pytest.approx(want, abs=1e-6)
    reverse = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert visual_word_kl(mm, vm, "mm||vw").item() == pytest.approx(reverse, abs=1e-6)
    # batchmean: the mean over image positions (a second position with KL 0 halves it)
    two = visual_word_kl(torch.cat([mm, torch.zeros(1, 2)]), torch.cat([vm, torch.zeros(1, 2)]))
    assert two.item() == pytest.approx(want / 2, abs=1e-6)
    with pytest.raises(ValueError, match="kl_direction"):
        visual_word_kl(mm, vm, "sideways")


def test_detached_target_stops_the_gradient():
    vm = torch.randn(3, 5, requires_grad=True)
    mm = torch.randn(3, 5, requires_grad=True)
    visual_word_kl(mm, vm).backward()
    assert vm.grad is not None and vm.grad.abs().sum() > 0          # the public default: not detached
    vm2 = vm.detach().clone().requires_grad_(True)
    visual_word_kl(mm, vm2, detach_target=True).backward()
    assert vm2.grad is None or vm2.grad.abs().sum() == 0


def test_kl_gradients_stay_finite_when_a_visual_word_underflows_to_zero():
    # logit gaps of 400 make softmax exactly 0 in fp32; a probability-space target then gave NaN gradients
    # (0 * log 0) that poisoned the adapter within a dozen steps of synth-cls-zs
    for direction in ("vw||mm", "mm||vw"):
        vm = torch.tensor([[200.0, 0.0, -200.0, 5.0], [0.3, -0.1, 0.2, 0.0]], requires_grad=True)
        mm = torch.tensor([[1.0, 300.0, -300.0, 0.0], [0.1, 0.4, -0.2, 0.5]], requires_grad=True)
        loss = visual_word_kl(mm, vm, direction)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(vm.grad).all() and torch.isfinite(mm.grad).all()
        # the gradients agree with a float64 closed form: d/dz KL(p||q) wrt the target's logits z is
        # p * (log p - log q - KL_row), wrt the model's logits it is (q - p); both / n positions
        t, m = (vm, mm) if direction == "vw||mm" else (mm, vm)
        log_p, log_q = F.log_softmax(t.detach().double(), -1), F.log_softmax(m.detach().double(), -1)
        p = log_p.exp()
        row = (p * (log_p - log_q)).sum(-1, keepdim=True)
        assert torch.allclose(t.grad.double(), p * (log_p - log_q - row) / 2, atol=1e-6)
        assert torch.allclose(m.grad.double(), (log_q.exp() - p) / 2, atol=1e-6)


def test_pif_is_the_probability_weighted_sum_of_embeddings():
    logits = torch.tensor([[0.0, math.log(3.0)]])
    emb = torch.tensor([[1.0, 0.0, 2.0], [0.0, 4.0, 2.0]])
    assert torch.allclose(pseudo_image_features(logits, emb), torch.tensor([[0.25, 3.0, 2.0]]))


def test_pool_grid():
    x = torch.arange(2 * 16 * 3, dtype=torch.float).view(2, 16, 3)       # a 4 x 4 grid
    y = pool_grid(x, 2)
    assert y.shape == (2, 4, 3)
    assert torch.allclose(y[0, 0], x[0, [0, 1, 4, 5]].mean(0))           # top-left 2 x 2 block
    assert pool_grid(x, 0) is x and pool_grid(x, 4) is x


@pytest.fixture
def vw_samples(tmp_path):
    blue, red = png(tmp_path / "b.png", (0, 0, 200)), png(tmp_path / "r.png", (200, 0, 0))
    return [sample("a", "The target.", [("A blue scene.", blue, 1)], image=red),
            sample("b", "No pictures here.", [("Text only.", None, 1)])]


def model(samples, **kw) -> VWLMMGenerator:
    cfg = build_config(VWLMMConfig, None, {}, {"lm": "tiny-llama", "patch_grid": 2, **kw}, "vwlmm")
    m = VWLMMGenerator(cfg)
    m.setup(toy_data(samples, ["a red thing", "nothing"]), seed=0)
    return m


def test_loss_is_ce_plus_weighted_kl_over_image_positions(vw_samples):
    m = model(vw_samples)
    m.module.eval()
    b = m.batch(vw_samples, [lm_utils.target_ids(m.tokenizer, t) for t in ("a red thing", "nothing")], True)
    soft = b["soft_mask"]
    assert int(soft[0].sum()) == 8 and int(soft[1].sum()) == 0            # 2 images x 2 x 2 tokens, none in b
    assert b["vm_logits"].shape == (8, m.module.vm_head.weight.shape[0])
    rows, cols, ids = lm_utils.target_positions(b["labels"])
    assert not bool(soft[rows, cols + 1].any())                          # no target position is an image position
    ce = F.cross_entropy(logits_at(m.module.lm, b, rows, cols), ids)
    s_rows, s_cols = soft.nonzero(as_tuple=True)
    # the VM logits at image position t are matched against the LM's prediction at t - 1
    mm = logits_at(m.module.lm, b, s_rows, s_cols - 1)
    kl = F.kl_div(F.log_softmax(mm, -1), F.softmax(b["vm_logits"], -1), reduction="sum") / 8
    assert m.loss(b).item() == pytest.approx((ce + kl).item(), rel=1e-5)
    m.config.vm_weight = 0.0
    assert m.loss(b).item() == pytest.approx(ce.item(), rel=1e-6)        # weight 0: plain cross-entropy


def test_batched_vm_logits_match_each_image_alone_and_decoding_skips_them(vw_samples):
    # two samples with images: one adapter / VM-head call serves the whole batch
    m = model(vw_samples)
    m.module.eval()
    both = [vw_samples[0], vw_samples[0]]
    b = m.batch(both, [lm_utils.target_ids(m.tokenizer, "a red thing")] * 2, True)
    rows = [m.enc.image_row(n.image) for n in vw_samples[0].nodes if n.image is not None]
    rows = [r for r in rows if r >= 0]
    alone = torch.cat([m.visual_words([r])[1][0] for r in rows])          # (2 images x 4 tokens, V)
    assert b["vm_logits"].shape == (16, alone.shape[1])
    assert torch.allclose(b["vm_logits"], torch.cat([alone, alone]), atol=1e-5)
    with torch.no_grad():                               # decoding and scoring: no loss, so no VM logits
        assert "vm_logits" not in m.batch(both, None, False)
    pif = model(vw_samples, pif=True)
    with torch.no_grad():                               # PIF needs them to build the visual tokens
        assert "vm_logits" in pif.batch(both, None, False)


def test_gradients_reach_the_vm_head_and_the_adapter(vw_samples):
    m = model(vw_samples)
    b = m.batch(vw_samples, [lm_utils.target_ids(m.tokenizer, t) for t in ("a red thing", "nothing")], True)
    m.loss(b).backward()
    assert m.module.vm_head.weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.module.adapter.parameters())
    m.module.zero_grad()
    m.config.vm_weight = 0.0
    m.loss(m.batch(vw_samples, [[5, 102], [6, 102]], True)).backward()
    assert m.module.vm_head.weight.grad is None or m.module.vm_head.weight.grad.abs().sum() == 0


def test_pif_tokens_and_diagnostics(vw_samples):
    m = model(vw_samples, pif=True)
    m.module.eval()
    soft = m.soft_tokens(vw_samples[:1])[0]
    _, vm = m.visual_words([m.enc.image_row(vw_samples[0].nodes[0].image)])
    emb = m.module.lm.get_input_embeddings().weight
    assert torch.allclose(soft[0], pseudo_image_features(vm[0], emb), atol=1e-6)
    m.diagnostic_samples = vw_samples               # toy_data has no test split here
    d = m.describe()["visual_words"]
    assert 0 < d["visual_word_entropy"] <= d["uniform_entropy"] + 1e-6 and len(d["top_visual_words"]) == 2
    assert m.train_epoch(1) > 0


def test_bad_values_are_refused(vw_samples):
    for over, msg in ((dict(adapter="mlp3"), "adapter"), (dict(kl_direction="x"), "kl_direction"),
                      (dict(vm_init="zeros"), "vm_init")):
        with pytest.raises(ConfigError, match=msg):
            model(vw_samples, **over)


@pytest.mark.slow
def test_vwlmm_on_the_wikiweb_fixture_with_tiny_clip_and_lm_by_path(env, tmp_path):
    raw = card_raw("wikiweb-gen")
    raw["dataset"]["params"]["sample_pages"] = 0
    card = write_card(tmp_path / "cards", raw)
    assert main(["data", "prepare", str(card), "--from", str(FIXTURES / "wikiweb" / "official")]) == 0
    lm, clip = save_lm(tmp_path / "llama", "llama"), save_clip(tmp_path / "clip")
    assert main(["eval", "--model", "vwlmm", "--task", str(card), "--quiet", "--set", f"lm={lm}",
                 "--set", f"vision_encoder={clip}", "--set", "epochs=1", "--set", "max_prompt_tokens=128"]) == 0
    rec = json.loads(next(p for p in env.results.rglob("*.json") if "_sweep" not in p.parts).read_text())
    assert rec["model"]["backbones"]["vision_encoder"]["path"] == str(clip.resolve())
    assert "cider" in rec["metrics"]["test"] and "visual_words" in rec["model"]["details"]


def test_vwlmm_classifies_unseen_classes_by_their_names():
    import dataclasses
    import functools

    from test_classification_baselines import homophilous, view

    from mmbench.models.vwlmm import VWLMMClassifier

    texts = [f"a {'red blue green'.split()[i % 3]} item number {i}" for i in range(30)]
    graph, perm = homophilous(n=30, texts=texts)
    v = view(graph, perm[:15], perm[15:22], perm[22:], train_classes=(0, 1), candidates=(2,))
    v = dataclasses.replace(v, assemble=functools.partial(v.graph.sample, k=1, max_nodes=4))
    cfg = build_config(VWLMMConfig, None, {}, {"lm": "tiny-llama", "max_prompt_tokens": 64}, "vwlmm")
    m = VWLMMClassifier(cfg)
    m.setup(v, seed=0)
    assert m.train_epoch(1) > 0
    m.begin_scoring()
    scores = m.predict(v.test_nodes)
    m.end_scoring()
    assert scores.shape == (len(v.test_nodes), 3) and bool((scores[:, :2] == -1e9).all())
