"""synth-cls and synth-gen: determinism, images, splits, parameters, and the designed modality/hop ordering
checked with oracle-style analyses of the generated data (no neural models)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import card_raw, write_card
from PIL import Image

from mmbench.data import data_status, load_task_data
from mmbench.data.synth_graph_content import (
    ANIMALS,
    ITEM_VERBS,
    NEUTRAL_ADJ,
    PLACES,
    PREPS,
    QUALITIES,
    SCENE_VERBS,
    THEMES,
    VERBS,
)
from mmbench.data.words import TYPE_NOUNS
from mmbench.errors import ConfigError
from mmbench.tasks import get_card, load_card

SMALL = {"synth-cls": {"num_nodes": 60}, "synth-gen": {"num_train": 10, "num_valid": 3, "num_test": 3}}


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    """The two bundled tasks, generated once for this module (images in a module tmp cache)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMBENCH_CACHE", str(tmp_path_factory.mktemp("synth-cache")))
        return {name: load_task_data(get_card(name)) for name in ("synth-cls", "synth-gen")}


@pytest.fixture(scope="module")
def gen_samples(bundled):
    """target node -> its assembled GraphSample, for the valid and test targets of the bundled synth-gen."""
    data = bundled["synth-gen"]
    return {v: data.assemble(v) for split in ("valid", "test") for v in data.graph.splits[split].tolist()}


def within_two_hops(g):
    """(N, N) sparse bool: node pairs at most 2 hops apart."""
    adj = sp.csr_matrix((np.ones(g.edge_index.shape[1]), g.edge_index.numpy()), shape=(g.num_nodes,) * 2)
    return ((adj + adj @ adj + sp.identity(g.num_nodes)) > 0).tocsr()


def small_card(tmp_path, name, **params):
    raw = card_raw(name)
    raw["dataset"]["params"].update(SMALL[name], **params)
    raw["dataset"].pop("expected")
    return load_card(write_card(tmp_path / f"c{len(list(tmp_path.glob('c*')))}", raw))


def words(text):
    return set(text.split()) if text else set()


# ------------------------------------------------------------------------------------------ cards, data
def test_bundled_cards_match_expected_counts(bundled):
    for name, data in bundled.items():
        card = get_card(name)
        assert data.verified and data.task == name and data.hops == 2
        expected = card.dataset["expected"]
        stats = {**data.stats(), "classes": len(data.graph.class_names)}
        assert {k: stats[k] for k in expected} == expected
        assert data_status(card)[0]
    cls, gen = bundled["synth-cls"], bundled["synth-gen"]
    assert cls.graph.class_names == THEMES[:6] and int(cls.graph.labels.min()) == 0
    assert cls.graph.meta["candidate_classes"] == tuple(range(6))
    assert gen.max_nodes == 12 and gen.graph.labels is None
    et = cls.graph.edge_type
    assert set(et.tolist()) == {0, 1, 2} and cls.graph.edge_type_names == ("text-text", "image-image", "text-image")
    # homophily as designed, no self-loops, both directions stored
    ei = cls.graph.edge_index
    assert 0.6 < float((cls.graph.labels[ei[0]] == cls.graph.labels[ei[1]]).float().mean()) < 0.8
    assert not bool((ei[0] == ei[1]).any())
    assert torch.equal(torch.sort(ei[0] * 10**6 + ei[1]).values, torch.sort(ei[1] * 10**6 + ei[0]).values)


def test_word_lists_are_real_words_and_disjoint():
    lists = [THEMES, QUALITIES, NEUTRAL_ADJ, ANIMALS, PLACES, TYPE_NOUNS, PREPS, SCENE_VERBS]
    for i, a in enumerate(lists):
        assert len(set(a)) == len(a) and all(w.isalpha() and w.islower() for w in a)
        for b in lists[i + 1:]:
            assert not set(a) & set(b), (a, b)
    assert not (set(VERBS) | set(ITEM_VERBS)) & (set(THEMES) | set(QUALITIES) | set(TYPE_NOUNS))


def test_deterministic_and_seed_changes_the_data(tmp_path):
    for name in ("synth-cls", "synth-gen"):
        a, b = load_task_data(small_card(tmp_path, name)), load_task_data(small_card(tmp_path, name))
        assert a.data_hash() == b.data_hash() and a.graph.texts == b.graph.texts
        c = load_task_data(small_card(tmp_path, name, seed=1))
        assert c.data_hash() != a.data_hash()
        assert c.graph.meta["image_root"] != a.graph.meta["image_root"]  # other params, other image folder


def test_data_hash_does_not_depend_on_the_cache_location(tmp_path, env, monkeypatch):
    for name in ("synth-cls", "synth-gen"):
        card = small_card(tmp_path, name)
        hashes, roots = [], []
        for where in ("cache-a", "cache-b"):
            monkeypatch.setenv("MMBENCH_CACHE", str(env.root / where / name))
            data = load_task_data(card)
            hashes.append(data.data_hash())
            roots.append(data.graph.meta["image_root"])
            assert roots[-1].startswith(str(env.root / where / name / "synth-images"))
        assert hashes[0] == hashes[1] and roots[0] != roots[1]


def test_images_are_png_of_the_right_size_and_regenerated_when_missing(tmp_path, bundled):
    for data in bundled.values():
        imgs = [p for p in data.graph.images if p is not None]
        assert imgs and all(p.startswith(data.graph.meta["image_root"]) for p in imgs)
        for p in imgs[:: max(1, len(imgs) // 50)]:
            with Image.open(p) as im:
                assert (im.format, im.mode, im.size) == ("PNG", "RGB", (64, 64))
    card = small_card(tmp_path, "synth-cls", image_size=32)
    data = load_task_data(card)
    victim = data.graph.images[7]
    before = Path(victim).read_bytes()
    with Image.open(victim) as im:
        assert im.size == (32, 32)
    os.unlink(victim)
    again = load_task_data(card)
    assert again.graph.images[7] == victim and Path(victim).read_bytes() == before
    assert again.data_hash() == data.data_hash()


def test_splits_are_disjoint(bundled):
    for name, data in bundled.items():
        s = {k: set(v.tolist()) for k, v in data.graph.splits.items()}
        assert set(s) == {"train", "valid", "test"}
        assert not (s["train"] & s["valid"] or s["train"] & s["test"] or s["valid"] & s["test"])
        if name == "synth-cls":
            assert s["train"] | s["valid"] | s["test"] == set(range(data.graph.num_nodes))
            assert [len(s[k]) for k in ("train", "valid", "test")] == [720, 240, 240]
        else:
            has_target = {i for i, t in enumerate(data.graph.targets) if t is not None}
            assert s["train"] | s["valid"] | s["test"] == has_target
            assert [len(s[k]) for k in ("train", "valid", "test")] == [200, 50, 200]


def test_gen_targets_never_in_own_text_and_samples_hold_the_neighbourhood(bundled, gen_samples):
    data = bundled["synth-gen"]
    g = data.graph
    two_hop = within_two_hops(g).sum(1).A1  # size of each 2-hop neighbourhood
    for split, nodes in g.splits.items():
        for v in nodes.tolist():
            target = g.targets[v]
            _, theme, obj, _, quality = target.split()
            own = g.texts[v]
            assert target not in own and theme not in words(own) and quality not in words(own), (split, v)
            assert obj in words(own)
            if split == "train":
                continue  # the assembly is checked on valid and test (each sample costs a k-hop search)
            sample = gen_samples[v]
            assert sample.id == str(v) and sample.nodes[0].text == own and sample.nodes[0].hop == 0
            hops = [n.hop for n in sample.nodes]
            assert hops == sorted(hops) and max(hops) == 2  # nearest first
            assert len(sample.nodes) == two_hop[v] <= data.max_nodes  # nothing cut off
            kinds = [n.kind for n in sample.nodes]
            assert kinds.count("scene") == 1 and kinds.count("note") == 1
            assert sample.nodes[kinds.index("scene")].hop == 1 and sample.nodes[kinds.index("note")].hop == 2


def test_gen_decoy_notes_hang_from_a_distractor_so_only_structure_tells_the_quality(tmp_path):
    """With ``p_decoy_note`` = 1 every sample holds two notes at hop 2 with different qualities: the one behind
    the link names the target's quality, the decoy hangs from one of the target's distractors."""
    data = load_task_data(small_card(tmp_path, "synth-gen", p_decoy_note=1.0))
    g = data.graph
    nbrs: dict[int, set[int]] = {}
    for a, b in g.edge_index.t().tolist():
        nbrs.setdefault(a, set()).add(b)
    for v in torch.cat(list(g.splits.values())).tolist():
        quality = g.targets[v].split()[-1]
        sample = data.assemble(v)
        notes = [n.node for n in sample.nodes if n.kind == "note"]
        assert len(notes) == 2 and all(n.hop == 2 for n in sample.nodes if n.kind == "note")
        qualities = {g.texts[n].split()[-1] for n in notes}
        assert len(qualities) == 2 and quality in qualities
        for n in notes:
            (parent,) = nbrs[n]  # every note hangs from exactly one node, itself a neighbour of the target
            assert v in nbrs[parent]
            true_note = g.kinds[parent] == "link"
            assert true_note == (g.texts[n].split()[-1] == quality)
            assert true_note or g.kinds[parent] == "item"


def test_decoy_probe_card_is_the_bundled_synth_gen_plus_decoy_notes(bundled, env):
    """tasks/probes/synth-gen-decoy.yaml: its counts verify, and it holds every synth-gen text plus 450 decoys."""
    from mmbench.paths import PROJECT_ROOT

    probe = load_task_data(load_card(PROJECT_ROOT / "tasks" / "probes" / "synth-gen-decoy.yaml"))
    gen = bundled["synth-gen"].graph
    assert probe.verified and probe.graph.num_nodes == gen.num_nodes + 450
    assert probe.graph.kinds.count("note") == 2 * gen.kinds.count("note")
    assert sum(t is not None for t in probe.graph.targets) == 450 and probe.graph.splits["test"].numel() == 200


def test_gen_without_decoy_notes_is_the_bundled_data(tmp_path, bundled):
    """``p_decoy_note`` = 0 (the default) draws nothing extra: the same data as a card without the key."""
    card = small_card(tmp_path, "synth-gen")
    with_key = small_card(tmp_path, "synth-gen", p_decoy_note=0.0)
    assert load_task_data(card).data_hash() == load_task_data(with_key).data_hash()
    assert "note" in bundled["synth-gen"].graph.kinds


@pytest.mark.parametrize("name, params, needle", [
    ("synth-cls", {"num_node": 10}, r"unknown synth-cls parameter\(s\) \['num_node'\]. Did you mean 'num_nodes'"),
    ("synth-gen", {"colour": 1}, r"unknown synth-gen parameter\(s\) \['colour'\]"),
    ("synth-cls", {"p_text_cue": 1.5}, r"synth-cls parameter p_text_cue must be a number in \[0, 1\]"),
    ("synth-cls", {"num_classes": 9}, r"num_classes must be an integer in \[2, 8\]"),
    ("synth-cls", {"seed": True}, r"seed must be an integer"),
    ("synth-gen", {"distractors": [3, 1]}, r"distractors must be a pair \[low, high\]"),
    ("synth-gen", {"max_nodes": 9}, r"max_nodes must be at least 4 \+ 2 \* max distractors = 10"),
    ("synth-gen", {"p_decoy_note": 0.5, "max_nodes": 10},
     r"max_nodes must be at least 4 \+ 2 \* max distractors \+ 1 \(decoy note\) = 11"),
    ("synth-gen", {"p_decoy_note": 0.5, "distractors": [0, 2]}, r"p_decoy_note > 0 needs at least one distractor"),
])
def test_bad_params_raise_config_error_naming_the_card(tmp_path, name, params, needle):
    card = small_card(tmp_path, name, **params)
    with pytest.raises(ConfigError, match=needle) as e:
        load_task_data(card)
    assert str(card.path) in str(e.value)


# ------------------------------------------------------------------------------------------ designed ordering
def colour_histogram(path):
    """64-bin RGB histogram (4 levels per channel) of the rendered PNG's pixels."""
    a = np.asarray(Image.open(path).convert("RGB")) // 64
    idx = (a[..., 0].astype(np.int64) * 16 + a[..., 1] * 4 + a[..., 2]).ravel()
    return np.bincount(idx, minlength=64) / idx.size


def test_cls_text_only_lt_node_multimodal_lt_structure_aware(bundled):
    """Logistic regression on own text (bag of words) < + own image colour histogram < + mean of 1- and
    2-hop neighbours' text and image features (an SGC-style structure-aware oracle)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    g = bundled["synth-cls"].graph
    n = g.num_nodes
    x_text = CountVectorizer(binary=True).fit_transform(g.texts).toarray().astype(float)
    x_node = np.hstack([x_text, np.stack([colour_histogram(p) for p in g.images])])
    adj = sp.csr_matrix((np.ones(g.edge_index.shape[1]), g.edge_index.numpy()), shape=(n, n))
    adj = sp.diags(1.0 / np.maximum(adj.sum(1).A1, 1)) @ adj
    hop1 = adj @ x_node
    x_graph = np.hstack([x_node, hop1, adj @ hop1])
    y, train, test = g.labels.numpy(), g.splits["train"].numpy(), g.splits["test"].numpy()
    acc = []
    for x in (x_text, x_node, x_graph):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)).fit(x[train], y[train])
        acc.append(model.score(x[test], y[test]))
    print(f"synth-cls test accuracy: text {acc[0]:.3f}, node multimodal {acc[1]:.3f}, "
          f"structure-aware {acc[2]:.3f}")
    assert acc[0] + 0.05 <= acc[1] and acc[1] + 0.05 <= acc[2], acc
    assert acc[0] > 1.5 / 6  # the own text is informative, just not enough


def shape_colour(path):
    """Mean colour of the pixels that differ from the (median) background."""
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    bg = np.median(a.reshape(-1, 3), axis=0)
    return a[np.abs(a - bg).sum(-1) > 60].mean(0)


def test_gen_answer_recoverability_grows_with_neighbour_texts_then_images(bundled, gen_samples):
    """Fraction of test samples whose whole answer is recoverable from (a) the target's text, (b) + the
    neighbours' texts, (c) + the neighbours' image colours (a colour -> theme map learnt on train)."""
    data = bundled["synth-gen"]
    g = data.graph
    themes, qualities = set(THEMES), set(QUALITIES)

    def coloured(images):  # mean shape colours of the images that are not grey
        cols = [shape_colour(p) for p in images if p]
        return [c for c in cols if c.max() - c.min() > 60]

    # colour -> theme centroids from the training targets' 2-hop neighbourhoods (what their samples hold)
    near = within_two_hops(g)
    by_theme: dict[str, list[np.ndarray]] = {}
    for v in g.splits["train"].tolist():
        images = [g.images[u] for u in near[v].indices]
        by_theme.setdefault(g.targets[v].split()[1], []).extend(coloured(images))
    names = sorted(by_theme)
    centroids = np.stack([np.mean(by_theme[t], 0) for t in names])

    ok = np.zeros((3, len(g.splits["test"])), dtype=bool)
    for i, v in enumerate(g.splits["test"].tolist()):
        _, theme, obj, _, quality = g.targets[v].split()
        sample = gen_samples[v]
        own = words(sample.nodes[0].text)
        all_text = set().union(*(words(n.text) for n in sample.nodes))
        # no conflicting evidence: only the answer's theme and quality occur in the sample's texts
        assert all_text & themes <= {theme} and all_text & qualities == {quality}
        from_images = {names[int(np.argmin(((centroids - c) ** 2).sum(1)))]
                       for c in coloured(n.image for n in sample.nodes)}
        ok[0, i] = {theme, obj, quality} <= own
        ok[1, i] = obj in own and theme in all_text and quality in all_text
        ok[2, i] = obj in own and (theme in all_text or theme in from_images) and quality in all_text
    frac = ok.mean(1)
    print(f"synth-gen answer recoverable: target text {frac[0]:.2f}, + neighbour texts {frac[1]:.2f}, "
          f"+ images {frac[2]:.2f}")
    assert frac[0] + 0.2 <= frac[1] and frac[1] + 0.2 <= frac[2] and frac[2] == 1.0, frac
