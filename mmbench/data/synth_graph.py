"""``synth-cls`` and ``synth-gen``: multimodal graphs generated deterministically from the card's parameters.

Both graphs use real English words and rendered RGB images: one circle, square or triangle (shape,
position and size random, i.e. noise) on a light grey background with pixel noise. Only the shape's
*colour* carries information: palette colour ``PALETTE[k]`` stands for theme word ``THEMES[k]``
(marine = blue, forest = green, desert = yellow, ...); a grey shape carries nothing. The PNGs live under
``cache_root()/synth-images/<hash of kind and parameters>/<node>.png`` and are rendered when missing;
``meta["image_root"]`` is that folder, so the data hash does not depend on where the cache is.
Edge types say through which modalities the two nodes relate (text-text, image-image, text-image);
every undirected edge is stored in both directions with one type.

synth-cls (node classification). Designed ordering: own text only < own text + own image < text +
image of the node and its 1- and 2-hop neighbours.
- ``num_nodes`` nodes in ``num_classes`` classes of (near) equal size; class k is named ``THEMES[k]``;
- text "a <adj> <slot> <animal> <verb> <prep> the <adj> <place>": the slot names the node's class with
  probability ``p_text_cue``; otherwise a wrong class (a decoy) with ``p_text_decoy``, else a neutral
  adjective. Independently the image shape has the class colour with ``p_image_cue``, else a random
  grey. A node with neither cue can only be classified through its neighbours;
- homophilous edges: every node draws one edge (so none is isolated), then random nodes draw more
  until about ``avg_degree`` per node; the other end is in the same class with probability
  ``homophily``, else in a random other class. Neighbours' cues are in their texts, their images or
  both, so a structure-aware model must read both modalities;
- an edge end relates through its cue's modality when it has exactly one cue, else through a random one;
- splits: a random ``1 - valid_fraction - test_fraction`` / ``valid_fraction`` / ``test_fraction``.

synth-cls-zs (zero-shot node classification; loader ``synth-cls-zs``, its own parameters and generator, so
synth-cls's data is untouched). Train on the nodes of some classes, predict among unseen classes only (the
card's ``protocol.zero_shot``, applied by ``mmbench.data.common.apply_class_split`` as for
ele-fashion-zs). A model can only name an unseen class by relating the node to the class *name*, so the
text never names a class; it names things associated with it:
- ``num_nodes`` nodes in ``num_classes`` classes of (near) equal size; class k is named ``THEMES[k]``;
- text, a field-notes line "<sighting>: <w1>, <w2> and <w3>" (``words_per_text`` words, e.g. "spotted:
  zebra, lamp and acacia"): each word is, independently, one of the class's ``ASSOCIATED`` words with
  probability ``p_word_cue``, otherwise a word associated with a random other class (a decoy) with
  probability ``p_word_decoy``, else a neutral household noun (``FILLERS``); no word twice in one text.
  No text contains any class name, not even inside a word (a test checks). The associated words are
  common words that both SmolLM2-135M (label log-likelihood of the name after the word, minus its
  likelihood after a neutral word) and MiniLM (cosine similarity to the name) relate to their theme more
  than to the other themes of its group (seen or unseen); near-spellings of a name (volcano, alps) are
  left out. Longer sentence frames ("a quiet postcard shows ...") pulled SmolLM2's label likelihood
  towards one name (tropical) whatever the words, hence the short line;
- the image shape has the class colour with probability ``p_image_cue`` (else a random grey), as in
  synth-cls; a colour relates to a class name only for a model that knows colours of places;
- homophilous edges, edge types and splits exactly as synth-cls (its parameters ``avg_degree``,
  ``homophily``, ``valid_fraction``, ``test_fraction``); a node "has a text cue" when at least one of its
  words is associated with its class. Neighbours' texts therefore carry further cues.
Designed property: a model that reads the class names (an LM's label likelihood, a sentence encoder's
similarity to the name) is well above chance on the unseen classes; a model that cannot (a classifier
trained on the seen classes' words, label propagation) is at chance. tests/test_synth_cls_zs.py measures it.

synth-gen (generation). ``num_train + num_valid + num_test`` target nodes, each the centre of its own
small component; the answer is "the <theme> <object> is <quality>":
- target ("item"): "<det> <adj> <object> <verb> near the <place>": the object only (never the theme or
  the quality, so never the answer);
- 1 hop, "scene": its image shape always has the theme's colour; with probability ``p_theme_text`` its
  text "a <theme> scene <verb> around the <place>" names the theme too, otherwise a neutral adjective
  takes the theme's place (then the theme is in the image only);
- 1 hop, "link": neutral text, no image; 2 hops (behind the link), "note": "this <adj> report calls it
  <quality>", no image: the quality is in a 2-hop neighbour's text only;
- 1 hop, ``distractors`` (an inclusive range) other items: the target's template with another object,
  grey images; a fraction ``p_cross_link`` of all distractors are paired into distractor-distractor
  edges across components (at most one each), which connects components without bringing another
  target's scene or note within 2 hops;
- optional (``p_decoy_note``, default 0: the bundled card has none), a structure probe: that fraction of
  targets get a decoy note "this <adj> report calls it <another quality>" hanging from one of their
  distractors, so two notes sit at hop 2 and only the graph (behind the link or behind an item) tells which
  names the target's quality. Drawn only when asked for, so a card without it generates the same data.
So the target's text alone gives the object; neighbours' texts add the quality and, for
``p_theme_text`` of the samples, the theme; neighbours' images give the theme for all. Node ids are
shuffled; the harness's default ``graph.sample(node, 2, max_nodes)`` (nearest first) holds the whole
2-hop neighbourhood because ``max_nodes >= 4 + 2 * max distractors`` is enforced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmbench import paths
from mmbench.data import register_loader
from mmbench.data.common import apply_class_split, verify_expected
from mmbench.data.graph import EDGE_TYPES, GraphTaskData, MultimodalGraph
from mmbench.data.synth_graph_content import (
    ANIMALS,
    ASSOCIATED,
    DETS,
    FILLERS,
    ITEM_VERBS,
    NEUTRAL_ADJ,
    PALETTE,
    PLACES,
    PREPS,
    QUALITIES,
    RENDER_VERSION,
    SCENE_VERBS,
    SIGHTINGS,
    THEMES,
    VERBS,
    render_images,
)
from mmbench.data.words import TYPE_NOUNS
from mmbench.errors import ConfigError, closest
from mmbench.io import canonical_json, sha256_hex
from mmbench.tasks import TaskCard

CLS_DEFAULTS: dict[str, Any] = {
    "seed": 0, "num_nodes": 1200, "num_classes": 6, "avg_degree": 6.0, "homophily": 0.7,
    "p_text_cue": 0.4, "p_text_decoy": 0.3, "p_image_cue": 0.4,
    "valid_fraction": 0.2, "test_fraction": 0.2,
    "image_size": 64, "image_noise": 10.0, "colour_jitter": 10.0,
}
ZS_DEFAULTS: dict[str, Any] = {
    "seed": 0, "num_nodes": 1600, "num_classes": 8, "avg_degree": 6.0, "homophily": 0.7,
    "words_per_text": 3, "p_word_cue": 0.5, "p_word_decoy": 0.2, "p_image_cue": 0.4,
    "valid_fraction": 0.2, "test_fraction": 0.2,
    "image_size": 64, "image_noise": 10.0, "colour_jitter": 10.0,
}
GEN_DEFAULTS: dict[str, Any] = {
    "seed": 0, "num_train": 200, "num_valid": 50, "num_test": 50,
    "num_themes": 8, "num_objects": 16, "num_qualities": 10,
    "p_theme_text": 0.5, "distractors": [1, 3], "p_cross_link": 0.5, "p_decoy_note": 0.0, "max_nodes": 12,
    "image_size": 64, "image_noise": 10.0, "colour_jitter": 10.0,
}
# key -> (kind, low, high) with kind int | float | range (an inclusive [low, high] pair of ints)
_SPECS: dict[str, dict[str, tuple[str, float, float]]] = {
    "synth-cls": {"seed": ("int", 0, 2**32 - 1), "num_nodes": ("int", 10, 10**6),
                  "num_classes": ("int", 2, len(THEMES)), "avg_degree": ("float", 2, 100),
                  "homophily": ("float", 0, 1), "p_text_cue": ("float", 0, 1), "p_text_decoy": ("float", 0, 1),
                  "p_image_cue": ("float", 0, 1), "valid_fraction": ("float", 0, 0.5),
                  "test_fraction": ("float", 0, 0.5), "image_size": ("int", 16, 512),
                  "image_noise": ("float", 0, 100), "colour_jitter": ("float", 0, 100)},
    "synth-cls-zs": {"seed": ("int", 0, 2**32 - 1), "num_nodes": ("int", 10, 10**6),
                     "num_classes": ("int", 2, len(THEMES)), "avg_degree": ("float", 2, 100),
                     "homophily": ("float", 0, 1), "words_per_text": ("int", 1, len(ASSOCIATED[0])),
                     "p_word_cue": ("float", 0, 1), "p_word_decoy": ("float", 0, 1),
                     "p_image_cue": ("float", 0, 1), "valid_fraction": ("float", 0, 0.5),
                     "test_fraction": ("float", 0, 0.5), "image_size": ("int", 16, 512),
                     "image_noise": ("float", 0, 100), "colour_jitter": ("float", 0, 100)},
    "synth-gen": {"seed": ("int", 0, 2**32 - 1), "num_train": ("int", 1, 10**6), "num_valid": ("int", 1, 10**6),
                  "num_test": ("int", 1, 10**6), "num_themes": ("int", 2, len(THEMES)),
                  "num_objects": ("int", 2, len(TYPE_NOUNS)), "num_qualities": ("int", 2, len(QUALITIES)),
                  "p_theme_text": ("float", 0, 1), "distractors": ("range", 0, 20), "p_cross_link": ("float", 0, 1),
                  "p_decoy_note": ("float", 0, 1),
                  "max_nodes": ("int", 4, 1000), "image_size": ("int", 16, 512),
                  "image_noise": ("float", 0, 100), "colour_jitter": ("float", 0, 100)},
}
_DEFAULTS = {"synth-cls": CLS_DEFAULTS, "synth-cls-zs": ZS_DEFAULTS, "synth-gen": GEN_DEFAULTS}


def check_params(kind: str, given: Any, where: str) -> dict[str, Any]:
    """``given`` merged over the defaults of ``kind`` ("synth-cls", "synth-cls-zs" or "synth-gen"), validated;
    every problem raises ``ConfigError`` naming ``where`` (the card)."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ConfigError(f"{where}: dataset.params must be a mapping of {kind} parameters")
    defaults, spec = _DEFAULTS[kind], _SPECS[kind]
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        hint = "".join(closest(str(k), defaults) for k in unknown[:1])
        raise ConfigError(f"{where}: unknown {kind} parameter(s) {unknown}.{hint} Known: {sorted(defaults)}")
    p = {**defaults, **given}
    for key, (typ, lo, hi) in spec.items():
        v = p[key]
        if typ == "range":
            ok = (isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_int(x) for x in v)
                  and lo <= v[0] <= v[1] <= hi)
            want = f"a pair [low, high] of integers with {lo:g} <= low <= high <= {hi:g}"
        else:
            ok = (_is_int(v) if typ == "int" else _is_num(v)) and lo <= v <= hi
            want = f"{'an integer' if typ == 'int' else 'a number'} in [{lo:g}, {hi:g}]"
        if not ok:
            raise ConfigError(f"{where}: {kind} parameter {key} must be {want}, got {v!r}")
    if kind in ("synth-cls", "synth-cls-zs"):
        if p["valid_fraction"] + p["test_fraction"] >= 0.9:
            raise ConfigError(f"{where}: {kind}: valid_fraction + test_fraction must leave training nodes")
        if p["num_nodes"] < 2 * p["num_classes"]:
            raise ConfigError(f"{where}: {kind}: num_nodes must be at least twice num_classes")
    else:
        decoys = int(p["p_decoy_note"] > 0)
        need = 4 + 2 * p["distractors"][1] + decoys
        if p["max_nodes"] < need:
            raise ConfigError(f"{where}: {kind}: max_nodes must be at least 4 + 2 * max distractors"
                              f"{' + 1 (decoy note)' if decoys else ''} = {need}, so that every sample holds its "
                              f"whole 2-hop neighbourhood; got {p['max_nodes']}")
        if decoys and p["distractors"][0] < 1:
            raise ConfigError(f"{where}: {kind}: p_decoy_note > 0 needs at least one distractor per target "
                              f"(a decoy note hangs from one); got distractors {p['distractors']}")
    return p


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def image_folder(kind: str, params: dict[str, Any]) -> Path:
    """Where the PNGs of ``kind`` with these (complete) parameters are cached."""
    key = sha256_hex(canonical_json({"kind": kind, "render_version": RENDER_VERSION, "params": params}))[:16]
    return paths.cache_root() / "synth-images" / key


def _status(card: TaskCard) -> tuple[bool, str]:
    return True, "generated on the fly from the card's parameters (images cached under $MMBENCH_CACHE)"


@register_loader("synth-cls", _status)
def load_synth_cls(card: TaskCard, verify: bool = True) -> GraphTaskData:
    p = check_params("synth-cls", card.dataset.get("params"), str(card.path))
    data = generate_cls(p, task=card.name, where=str(card.path))
    data.graph = apply_class_split(card, data.graph, data.notes)
    data.hops, data.max_nodes = int(card.protocol.get("hops", 2)), int(card.protocol.get("max_nodes", 16))
    actual = {**data.stats(), "classes": len(data.graph.class_names)}
    data.verified = verify_expected(card, actual, verify, Path(data.graph.meta["image_root"]), data.notes)
    return data


@register_loader("synth-cls-zs", _status)
def load_synth_cls_zs(card: TaskCard, verify: bool = True) -> GraphTaskData:
    p = check_params("synth-cls-zs", card.dataset.get("params"), str(card.path))
    data = generate_cls_zs(p, task=card.name, where=str(card.path))
    data.graph = apply_class_split(card, data.graph, data.notes)
    data.hops, data.max_nodes = int(card.protocol.get("hops", 2)), int(card.protocol.get("max_nodes", 16))
    actual = {**data.stats(), "classes": len(data.graph.class_names)}
    data.verified = verify_expected(card, actual, verify, Path(data.graph.meta["image_root"]), data.notes)
    return data


@register_loader("synth-gen", _status)
def load_synth_gen(card: TaskCard, verify: bool = True) -> GraphTaskData:
    p = check_params("synth-gen", card.dataset.get("params"), str(card.path))
    data = generate_gen(p, task=card.name, where=str(card.path))
    data.verified = verify_expected(card, data.stats(), verify, Path(data.graph.meta["image_root"]), data.notes)
    return data


def generate_cls(params: dict[str, Any], task: str = "synth-cls", where: str = "synth-cls") -> GraphTaskData:
    """The synth-cls graph (module docstring) for ``params`` (merged over ``CLS_DEFAULTS``); renders
    missing images."""
    p = check_params("synth-cls", params, where)
    rng = np.random.default_rng(p["seed"])
    n, c = p["num_nodes"], p["num_classes"]
    labels = rng.permutation(np.arange(n) % c)

    # cues: text names the class / a decoy class / nothing; image has the class colour or grey
    text_cue = rng.random(n) < p["p_text_cue"]
    decoy = ~text_cue & (rng.random(n) < p["p_text_decoy"])
    decoy_class = (labels + rng.integers(1, c, n)) % c
    image_cue = rng.random(n) < p["p_image_cue"]

    slot = np.where(text_cue, np.array(THEMES)[labels],
                    np.where(decoy, np.array(THEMES)[decoy_class], _pick(rng, NEUTRAL_ADJ, n)))
    adj1, adj2 = _pick(rng, NEUTRAL_ADJ, n), _pick(rng, NEUTRAL_ADJ, n)
    animal, verb, prep, place = (_pick(rng, w, n) for w in (ANIMALS, VERBS, PREPS, PLACES))
    texts = tuple(f"a {a} {s} {b} {v} {q} the {d} {pl}"
                  for a, s, b, v, q, d, pl in zip(adj1, slot, animal, verb, prep, adj2, place, strict=True))

    src, dst = _homophilous_edges(rng, labels, c, p["avg_degree"], p["homophily"])
    # the modality each end relates through: its cue's if it has exactly one cue, else a random one
    only_text, only_image = text_cue & ~image_cue, image_cue & ~text_cue
    m = len(src)
    end_mod = []
    for ends in (src, dst):
        rand = rng.random(m) < 0.5  # True = text
        end_mod.append(np.where(only_text[ends], True, np.where(only_image[ends], False, rand)))
    etype = np.where(end_mod[0] & end_mod[1], 0, np.where(~end_mod[0] & ~end_mod[1], 1, 2))
    edge_index, edge_type = _both_directions(src, dst, etype)

    perm = rng.permutation(n)
    n_test, n_valid = int(round(n * p["test_fraction"])), int(round(n * p["valid_fraction"]))
    splits = {"test": perm[:n_test], "valid": perm[n_test:n_test + n_valid], "train": perm[n_test + n_valid:]}
    splits_t = {k: torch.from_numpy(np.sort(v)).long() for k, v in splits.items()}

    colours = np.where(image_cue[:, None], PALETTE[labels], np.nan)
    folder = image_folder("synth-cls", p)
    images = render_images(folder, colours, p)

    classes = tuple(range(c))
    graph = MultimodalGraph(
        num_nodes=n, texts=texts, images=images, kinds=("node",) * n, edge_index=edge_index,
        edge_type=edge_type, edge_type_names=EDGE_TYPES, labels=torch.from_numpy(labels).long(),
        class_names=THEMES[:c], splits=splits_t,
        meta={"image_root": str(folder), "train_classes": classes, "candidate_classes": classes,
              "describe": {"generator": "synth-cls", "images": f"synth-images/{folder.name}"}})
    return GraphTaskData(task=task, graph=graph, hops=2, max_nodes=16)


def _pick(rng: np.random.Generator, words: tuple[str, ...], n: int) -> np.ndarray:
    return np.array(words)[rng.integers(0, len(words), n)]


def _homophilous_edges(rng: np.random.Generator, labels: np.ndarray, c: int, avg_degree: float,
                       homophily: float) -> tuple[np.ndarray, np.ndarray]:
    """Undirected edges (src < dst), distinct, loop-free: one drawn by every node, the rest by random nodes."""
    n = len(labels)
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=c)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts[labels[order]]  # position of each node inside its class
    m = max(n, int(round(n * avg_degree / 2)))
    u = np.concatenate([np.arange(n), rng.integers(0, n, m - n)])
    same = rng.random(m) < homophily
    cls = np.where(same, labels[u], (labels[u] + rng.integers(1, c, m)) % c)
    # inside the same class, skip the node itself
    size = np.where(same, counts[cls] - 1, counts[cls])
    r = np.floor(rng.random(m) * size).astype(np.int64)
    r = np.where(same & (r >= rank[u]), r + 1, r)
    v = order[starts[cls] + r]
    a, b = np.minimum(u, v), np.maximum(u, v)
    key = np.unique(a * n + b)
    return key // n, key % n


def _both_directions(src: np.ndarray, dst: np.ndarray, etype: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    ei = np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])])
    return torch.from_numpy(ei).long(), torch.from_numpy(np.concatenate([etype, etype])).long()


def generate_cls_zs(params: dict[str, Any], task: str = "synth-cls-zs",
                    where: str = "synth-cls-zs") -> GraphTaskData:
    """The synth-cls-zs graph (module docstring) for ``params`` (merged over ``ZS_DEFAULTS``) with every class
    a training and candidate class (the card's ``protocol.zero_shot`` split is applied by the loader);
    renders missing images. Nothing derived from the labels goes into ``meta`` (adapters receive it);
    ``associated_class`` maps a word back to its class for analyses."""
    p = check_params("synth-cls-zs", params, where)
    rng = np.random.default_rng(p["seed"])
    n, c, k = p["num_nodes"], p["num_classes"], p["words_per_text"]
    labels = rng.permutation(np.arange(n) % c)

    # per slot: an associated word of the node's class / of a decoy class / a filler
    cue = rng.random((n, k)) < p["p_word_cue"]
    decoy = ~cue & (rng.random((n, k)) < p["p_word_decoy"])
    decoy_class = (labels[:, None] + rng.integers(1, c, (n, k))) % c
    source = np.where(cue, labels[:, None], np.where(decoy, decoy_class, -1))
    # distinct word positions inside each text (distinct words for the same class; fillers likewise)
    word_pos = np.argsort(rng.random((n, len(ASSOCIATED[0]))), axis=1)[:, :k]
    filler_pos = np.argsort(rng.random((n, len(FILLERS))), axis=1)[:, :k]
    lexicon = np.array(ASSOCIATED)
    words = np.where(source >= 0, lexicon[np.maximum(source, 0), word_pos], np.array(FILLERS)[filler_pos])
    image_cue = rng.random(n) < p["p_image_cue"]
    sighting = _pick(rng, SIGHTINGS, n)
    texts = tuple(f"{h}: {_word_list(list(w))}" for h, w in zip(sighting, words, strict=True))

    src, dst = _homophilous_edges(rng, labels, c, p["avg_degree"], p["homophily"])
    text_cue = cue.any(axis=1)
    only_text, only_image = text_cue & ~image_cue, image_cue & ~text_cue
    m = len(src)
    end_mod = []
    for ends in (src, dst):
        rand = rng.random(m) < 0.5  # True = text
        end_mod.append(np.where(only_text[ends], True, np.where(only_image[ends], False, rand)))
    etype = np.where(end_mod[0] & end_mod[1], 0, np.where(~end_mod[0] & ~end_mod[1], 1, 2))
    edge_index, edge_type = _both_directions(src, dst, etype)

    perm = rng.permutation(n)
    n_test, n_valid = int(round(n * p["test_fraction"])), int(round(n * p["valid_fraction"]))
    splits = {"test": perm[:n_test], "valid": perm[n_test:n_test + n_valid], "train": perm[n_test + n_valid:]}
    splits_t = {s: torch.from_numpy(np.sort(v)).long() for s, v in splits.items()}

    colours = np.where(image_cue[:, None], PALETTE[labels], np.nan)
    folder = image_folder("synth-cls-zs", p)
    images = render_images(folder, colours, p)

    classes = tuple(range(c))
    graph = MultimodalGraph(
        num_nodes=n, texts=texts, images=images, kinds=("node",) * n, edge_index=edge_index,
        edge_type=edge_type, edge_type_names=EDGE_TYPES, labels=torch.from_numpy(labels).long(),
        class_names=THEMES[:c], splits=splits_t,
        meta={"image_root": str(folder), "train_classes": classes, "candidate_classes": classes,
              "describe": {"generator": "synth-cls-zs", "images": f"synth-images/{folder.name}"}})
    return GraphTaskData(task=task, graph=graph, hops=2, max_nodes=16)


def associated_class(word: str) -> int:
    """The class (index into ``THEMES``) whose ``ASSOCIATED`` list holds ``word``; -1 for any other word."""
    return _WORD_CLASS.get(word, -1)


_WORD_CLASS = {w: k for k, ws in enumerate(ASSOCIATED) for w in ws}


def _word_list(words: list[str]) -> str:
    """"a", "a and b", "a, b and c", ..."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def generate_gen(params: dict[str, Any], task: str = "synth-gen", where: str = "synth-gen") -> GraphTaskData:
    """The synth-gen graph (module docstring) for ``params`` (merged over ``GEN_DEFAULTS``); renders
    missing images."""
    p = check_params("synth-gen", params, where)
    rng = np.random.default_rng(p["seed"])
    n_t = p["num_train"] + p["num_valid"] + p["num_test"]
    themes, objects, qualities = THEMES[:p["num_themes"]], TYPE_NOUNS[:p["num_objects"]], QUALITIES[:p["num_qualities"]]
    theme = rng.integers(0, len(themes), n_t)
    obj = rng.integers(0, len(objects), n_t)
    quality = rng.integers(0, len(qualities), n_t)
    theme_in_text = rng.random(n_t) < p["p_theme_text"]
    lo, hi = p["distractors"]
    n_dis = rng.integers(lo, hi + 1, n_t)
    # drawn only when asked for, so that a card without decoys generates exactly what it did before
    has_decoy = rng.random(n_t) < p["p_decoy_note"] if p["p_decoy_note"] > 0 else np.zeros(n_t, dtype=bool)

    # local layout per component: target, scene, link, note, distractors..., [decoy note]; then ids are shuffled
    sizes = 4 + n_dis + has_decoy
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    n = int(sizes.sum())
    ids = rng.permutation(n)  # local position -> node id
    tgt, scene, link, note = (ids[first + k] for k in range(4))
    comp_of_dis = np.repeat(np.arange(n_t), n_dis)
    dis_local = first[comp_of_dis] + 4 + (np.arange(int(n_dis.sum())) - np.repeat(np.cumsum(n_dis) - n_dis, n_dis))
    dis = ids[dis_local]
    dis_obj = (obj[comp_of_dis] + rng.integers(1, len(objects), len(dis))) % len(objects)
    with_decoy = np.flatnonzero(has_decoy)
    decoy = ids[first[with_decoy] + 4 + n_dis[with_decoy]]
    decoy_parent, decoy_quality = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if len(with_decoy):
        dis_start = np.cumsum(n_dis) - n_dis  # first position of each component's distractors in ``dis``
        decoy_parent = dis[dis_start[with_decoy] + rng.integers(0, n_dis[with_decoy])]
        decoy_quality = (quality[with_decoy] + rng.integers(1, len(qualities), len(with_decoy))) % len(qualities)

    texts: list[str | None] = [None] * n
    images_colour = np.full((n, 3), np.nan)
    has_image = np.zeros(n, dtype=bool)
    kinds = [""] * n

    def item(o: int) -> str:
        return (f"{DETS[rng.integers(len(DETS))]} {NEUTRAL_ADJ[rng.integers(len(NEUTRAL_ADJ))]} {objects[o]} "
                f"{ITEM_VERBS[rng.integers(len(ITEM_VERBS))]} near the {PLACES[rng.integers(len(PLACES))]}")

    targets: list[str | None] = [None] * n
    for i in range(n_t):
        t, s, lk, nt = int(tgt[i]), int(scene[i]), int(link[i]), int(note[i])
        texts[t], kinds[t], has_image[t] = item(int(obj[i])), "item", True
        targets[t] = f"the {themes[theme[i]]} {objects[obj[i]]} is {qualities[quality[i]]}"
        word = themes[theme[i]] if theme_in_text[i] else NEUTRAL_ADJ[rng.integers(len(NEUTRAL_ADJ))]
        texts[s] = (f"a {word} scene {SCENE_VERBS[rng.integers(len(SCENE_VERBS))]} around the "
                    f"{PLACES[rng.integers(len(PLACES))]}")
        kinds[s], has_image[s], images_colour[s] = "scene", True, PALETTE[theme[i]]
        texts[lk] = (f"a {NEUTRAL_ADJ[rng.integers(len(NEUTRAL_ADJ))]} path leads on from the "
                     f"{PLACES[rng.integers(len(PLACES))]}")
        kinds[lk] = "link"
        texts[nt] = f"this {NEUTRAL_ADJ[rng.integers(len(NEUTRAL_ADJ))]} report calls it {qualities[quality[i]]}"
        kinds[nt] = "note"
    for d, o in zip(dis.tolist(), dis_obj.tolist(), strict=True):
        texts[d], kinds[d], has_image[d] = item(o), "item", True
    for d, q in zip(decoy.tolist(), decoy_quality.tolist(), strict=True):
        texts[d] = f"this {NEUTRAL_ADJ[rng.integers(len(NEUTRAL_ADJ))]} report calls it {qualities[q]}"
        kinds[d] = "note"

    # edges (type 0 text-text, 1 image-image, 2 text-image)
    comp_dis_tgt = tgt[comp_of_dis]
    pool = rng.permutation(dis)
    n_pairs = int(len(pool) * p["p_cross_link"]) // 2
    pairs = pool[: 2 * n_pairs].reshape(-1, 2)
    src = np.concatenate([tgt, tgt, link, comp_dis_tgt, pairs[:, 0], decoy_parent])
    dst = np.concatenate([scene, link, note, dis, pairs[:, 1], decoy])
    etype = np.concatenate([np.where(theme_in_text, 0, 2), np.zeros(2 * n_t, dtype=np.int64),
                            np.zeros(len(dis), dtype=np.int64), np.ones(n_pairs, dtype=np.int64),
                            np.zeros(len(decoy), dtype=np.int64)])
    edge_index, edge_type = _both_directions(src, dst, etype)

    order = rng.permutation(n_t)
    a, b = p["num_train"], p["num_train"] + p["num_valid"]
    splits = {"train": tgt[order[:a]], "valid": tgt[order[a:b]], "test": tgt[order[b:]]}
    splits_t = {k: torch.from_numpy(np.sort(v)).long() for k, v in splits.items()}

    folder = image_folder("synth-gen", p)
    paths_ = render_images(folder, images_colour, p, only=has_image)
    graph = MultimodalGraph(
        num_nodes=n, texts=tuple(texts), images=paths_, kinds=tuple(kinds), edge_index=edge_index,
        edge_type=edge_type, edge_type_names=EDGE_TYPES, targets=tuple(targets), splits=splits_t,
        meta={"image_root": str(folder),
              "describe": {"generator": "synth-gen", "images": f"synth-images/{folder.name}",
                           "answer": "the <theme> <object> is <quality>"}})
    return GraphTaskData(task=task, graph=graph, hops=2, max_nodes=p["max_nodes"])
