"""synth-cls-zs: counts, determinism, the zero-shot class split, words, and the designed property measured with
cheap analyses: what a model learns from the seen classes' words cannot pick among the unseen classes, while
relating the words to the class *names* (the generator's lexicon, MiniLM similarity) is well above chance."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import torch
from conftest import card_raw, write_card

from mmbench.data import load_task_data
from mmbench.data.synth_graph import associated_class
from mmbench.data.synth_graph_content import ASSOCIATED, FILLERS, SIGHTINGS, THEMES
from mmbench.errors import ConfigError
from mmbench.tasks import get_card, load_card

SEEN, UNSEEN = (0, 1, 2, 3), (4, 5, 6, 7)
CHANCE = 1 / len(UNSEEN)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMBENCH_CACHE", str(tmp_path_factory.mktemp("zs-cache")))
        return load_task_data(get_card("synth-cls-zs"))


@pytest.fixture(scope="module")
def predict_nodes(data):
    """Valid + test nodes (all of unseen classes) and their labels."""
    g = data.graph
    nodes = torch.cat([g.splits["valid"], g.splits["test"]]).numpy()
    return nodes, g.labels.numpy()[nodes]


def words_of(text):
    return re.findall(r"[a-z]+", text)


def small_card(tmp_path, **params):
    raw = card_raw("synth-cls-zs")
    raw["dataset"]["params"].update({"num_nodes": 80}, **params)
    raw["dataset"].pop("expected")
    return load_card(write_card(tmp_path / f"c{len(list(tmp_path.glob('c*')))}", raw))


# ------------------------------------------------------------------------------------------ card, data, split
def test_counts_match_the_card(data):
    card = get_card("synth-cls-zs")
    stats = {**data.stats(), "classes": len(data.graph.class_names)}
    expected = card.dataset["expected"]
    assert data.verified and {k: stats[k] for k in expected} == expected
    assert expected == {"nodes": 1600, "edges": 9536, "classes": 8, "train": 488, "valid": 163, "test": 165,
                        "with_text": 1600, "with_image": 1600}
    assert card.version == 1 and card.family == "classification" and data.hops == 2
    g = data.graph
    ei = g.edge_index
    homophily = float((g.labels[ei[0]] == g.labels[ei[1]]).float().mean())
    assert 0.65 < homophily < 0.75 and not bool((ei[0] == ei[1]).any())
    assert torch.equal(torch.sort(ei[0] * 10**6 + ei[1]).values, torch.sort(ei[1] * 10**6 + ei[0]).values)
    assert int(torch.bincount(torch.cat([ei[0], ei[1]]), minlength=g.num_nodes).min()) > 0  # none isolated


def test_zero_shot_split(data):
    g = data.graph
    assert g.class_names == THEMES
    assert g.meta["train_classes"] == SEEN and g.meta["candidate_classes"] == UNSEEN
    assert g.meta["describe"]["zero_shot"] is True
    y = g.labels
    assert set(y[g.splits["train"]].tolist()) == set(SEEN)
    assert set(y[g.splits["valid"]].tolist()) == set(UNSEEN) == set(y[g.splits["test"]].tolist())
    s = {k: set(v.tolist()) for k, v in g.splits.items()}
    assert not (s["train"] & s["valid"] or s["train"] & s["test"] or s["valid"] & s["test"])
    # the nodes left out of every split (unseen classes' train-split nodes, seen classes' valid/test nodes) stay
    # in the graph with their texts and images, as neighbours
    left_out = set(range(g.num_nodes)) - s["train"] - s["valid"] - s["test"]
    assert len(left_out) == 1600 - 488 - 163 - 165
    assert any(int(y[v]) in UNSEEN for v in left_out) and any(int(y[v]) in SEEN for v in left_out)
    assert "zero-shot split: train keeps 488 of 960 nodes" in data.notes[0]


def test_deterministic_and_seed_changes_the_data(tmp_path):
    a, b = load_task_data(small_card(tmp_path)), load_task_data(small_card(tmp_path))
    assert a.data_hash() == b.data_hash() and a.graph.texts == b.graph.texts
    c = load_task_data(small_card(tmp_path, seed=1))
    assert c.data_hash() != a.data_hash() and c.graph.meta["image_root"] != a.graph.meta["image_root"]
    # the meta an adapter receives holds nothing derived from the labels beyond the class split
    assert set(a.graph.meta) == {"image_root", "train_classes", "candidate_classes", "describe"}


@pytest.mark.parametrize("params, needle", [
    ({"words_per_txt": 3}, r"unknown synth-cls-zs parameter\(s\) \['words_per_txt'\]. Did you mean 'words_per_text'"),
    ({"words_per_text": 13}, r"words_per_text must be an integer in \[1, 12\]"),
    ({"p_word_cue": -0.1}, r"p_word_cue must be a number in \[0, 1\]"),
])
def test_bad_params_name_the_card(tmp_path, params, needle):
    card = small_card(tmp_path, **params)
    with pytest.raises(ConfigError, match=needle) as e:
        load_task_data(card)
    assert str(card.path) in str(e.value)


# ------------------------------------------------------------------------------------------ words
def test_word_lists_are_real_words_disjoint_and_never_contain_a_class_name():
    lists = [*ASSOCIATED, FILLERS, SIGHTINGS, THEMES]
    assert len(ASSOCIATED) == len(THEMES) and {len(a) for a in ASSOCIATED} == {12}
    for i, a in enumerate(lists):
        assert len(set(a)) == len(a) and all(w.isalpha() and w.islower() for w in a), a
        for b in lists[i + 1:]:
            assert not set(a) & set(b), (a, b)
    for w in (*(w for a in ASSOCIATED for w in a), *FILLERS, *SIGHTINGS):
        assert not any(t in w or w in t for t in THEMES), w
    assert associated_class("iceberg") == THEMES.index("arctic") and associated_class("lamp") == -1


def test_texts_never_name_a_class_and_follow_the_design(data):
    g = data.graph
    vocab = {w for a in ASSOCIATED for w in a} | set(FILLERS) | set(SIGHTINGS) | {"and"}
    source = np.full((g.num_nodes, 3), -2)
    for v, text in enumerate(g.texts):
        assert not any(t in text.lower() for t in THEMES), text  # not even inside a word
        ws = words_of(text)
        assert ws[0] in SIGHTINGS and set(ws) <= vocab and re.fullmatch(r"[a-z]+: [a-z]+, [a-z]+ and [a-z]+", text)
        slots = [w for w in ws[1:] if w != "and"]
        assert len(set(slots)) == 3
        source[v] = [associated_class(w) for w in slots]
    y = g.labels.numpy()[:, None]
    cue, filler = source == y, source == -1
    decoy = ~cue & ~filler
    # per word: own class 0.5, else decoy 0.2 (0.1 of all words), else filler (0.4)
    assert abs(cue.mean() - 0.5) < 0.02 and abs(decoy.mean() - 0.1) < 0.015 and abs(filler.mean() - 0.4) < 0.02
    assert 0.10 < (~cue.any(1)).mean() < 0.15  # ~1/8 of the nodes have no cue in their own text


# ------------------------------------------------------------------------------------------ designed property
def test_seen_class_words_cannot_pick_an_unseen_class(data, predict_nodes):
    """A bag-of-words logistic regression trained on the seen classes fits them, but its predictions on
    unseen-class nodes carry no information about which unseen class: even the best of the 24 ways to map
    its 4 seen-class outputs onto the 4 unseen classes (chosen with the answers, so optimistic) is near
    chance. The same features trained on unseen-class labels (half of the nodes, scored on the other half)
    classify them well: the information is in the text, only reachable through the class names."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    g = data.graph
    x = CountVectorizer(binary=True).fit_transform(g.texts)
    y = g.labels.numpy()
    train = g.splits["train"].numpy()
    lr = LogisticRegression(max_iter=2000).fit(x[train], y[train])
    nodes, truth = predict_nodes
    pred = lr.predict(x[nodes])
    best = max(float(np.mean(np.array(perm)[pred] == truth)) for perm in itertools.permutations(UNSEEN))
    half = len(nodes) // 2
    sup = LogisticRegression(max_iter=2000).fit(x[nodes[:half]], truth[:half]).score(x[nodes[half:]], truth[half:])
    print(f"synth-cls-zs: seen-trained BoW LR train acc {lr.score(x[train], y[train]):.3f}, best mapping onto "
          f"unseen {best:.3f} (chance {CHANCE}); supervised on unseen {sup:.3f}")
    assert lr.score(x[train], y[train]) > 0.9
    assert best < CHANCE + 0.1
    assert sup > 0.75


def test_relating_words_to_class_names_is_well_above_chance(data, predict_nodes):
    """Own text only, candidates = the unseen classes: (a) the generator's lexicon (count the words
    associated with each candidate name), (b) MiniLM: cosine similarity between the text and the class name
    (no training, no generator knowledge). Neighbours (homophily 0.7) add more."""
    import torch.nn.functional as F

    from mmbench.backbones import encode_texts

    g = data.graph
    nodes, truth = predict_nodes
    cand = np.array(UNSEEN)
    tie = np.random.default_rng(0).random((len(nodes), len(cand))) * 1e-3  # random tie-break
    counts = np.array([[sum(associated_class(w) == k for w in words_of(g.texts[v])) for k in cand] for v in nodes])
    lexicon = float(np.mean(cand[(counts + tie).argmax(1)] == truth))
    src, dst = g.edge_index.numpy()
    nb = np.zeros((g.num_nodes, len(cand)))
    all_counts = np.array([[sum(associated_class(w) == k for w in words_of(t)) for k in cand] for t in g.texts])
    np.add.at(nb, dst, all_counts[src])
    with_neighbours = float(np.mean(cand[(counts + 0.5 * nb[nodes] + tie).argmax(1)] == truth))

    text_emb, _ = encode_texts([g.texts[v] for v in nodes], "minilm")
    name_emb, _ = encode_texts([THEMES[k] for k in cand], "minilm")
    sim = F.normalize(text_emb.float(), dim=1) @ F.normalize(name_emb.float(), dim=1).t()
    minilm = float(np.mean(cand[sim.argmax(1).numpy()] == truth))
    print(f"synth-cls-zs own text: lexicon {lexicon:.3f}, + neighbours {with_neighbours:.3f}, MiniLM "
          f"similarity {minilm:.3f} (chance {CHANCE})")
    assert lexicon > 0.8 and with_neighbours > lexicon + 0.05
    assert minilm > 0.7
