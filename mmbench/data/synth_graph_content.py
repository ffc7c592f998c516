"""What the synthetic graph tasks are made of: their word lists and class cues, and the rendered node images
(``mmbench.data.synth_graph`` describes the tasks)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

RENDER_VERSION = 1  # bump when the rendering changes: it names a new image folder

# Theme words (class names of synth-cls, themes of synth-gen) and their colours, in the same order.
THEMES = ("marine", "forest", "desert", "volcanic", "savanna", "alpine", "arctic", "tropical")
PALETTE = np.array([(35, 85, 205), (45, 150, 60), (225, 195, 55), (205, 40, 35),
                    (235, 130, 30), (135, 60, 190), (60, 200, 215), (215, 50, 160)], dtype=np.float64)
GREY_LEVELS = (70.0, 160.0)       # uniform grey of a shape without a cue
BACKGROUND_LEVELS = (215.0, 245.0)
SHAPES = ("circle", "square", "triangle")

# Word lists of the small grammars (disjoint from THEMES and QUALITIES; a test checks).
NEUTRAL_ADJ = ("small", "quiet", "young", "common", "large", "little", "lone", "busy", "plain", "shy",
               "slow", "tall")
ANIMALS = ("heron", "lizard", "beetle", "crab", "falcon", "otter", "spider", "snail", "moth", "toad",
           "sparrow", "eel", "fox", "owl", "newt", "wren")
VERBS = ("rests", "hides", "feeds", "nests", "waits", "sleeps", "wanders", "hunts")
PREPS = ("near", "under", "beside", "behind", "above")
PLACES = ("rock", "log", "path", "wall", "pool", "ridge", "hill", "root", "reef", "cliff", "shore", "cave")
QUALITIES = ("fragile", "famous", "hidden", "crowded", "peaceful", "ancient", "endless", "lonely",
             "sacred", "restless")
ITEM_VERBS = ("lies", "stands", "rests", "appears", "waits", "remains")
SCENE_VERBS = ("spreads", "opens", "unfolds", "stretches")
DETS = ("a", "one", "the", "this")

# synth-cls-zs: common English words a reader (and a small LM or sentence encoder) associates with each theme
# word, never containing one; ASSOCIATED[k] belongs to THEMES[k]; all lists are disjoint (a test checks)
ASSOCIATED = (
    ("jellyfish", "shark", "dolphin", "octopus", "plankton", "whale", "coral", "lobster", "seaweed", "squid",
     "ocean", "starfish"),  # marine
    ("trees", "maple", "lumber", "timber", "wood", "fox", "woods", "oak", "leaves", "elk", "woodland",
     "squirrel"),  # forest
    ("coyote", "cactus", "dunes", "arid", "cacti", "tumbleweed", "oasis", "drought", "sands", "thirst",
     "camel", "dust"),  # desert
    ("obsidian", "eruption", "lava", "magma", "molten", "basalt", "crater", "pumice", "earthquake", "sulfur",
     "geyser", "tremor"),  # volcanic
    ("hyena", "giraffe", "wildebeest", "gazelle", "grassland", "lion", "zebra", "rhino", "baboon", "lioness",
     "hippo", "acacia"),  # savanna
    ("ski", "skiing", "summit", "mountain", "skier", "climber", "hiker", "avalanche", "ibex", "mountaineer",
     "crag", "trail"),  # alpine
    ("permafrost", "narwhal", "tundra", "iceberg", "igloo", "snowy", "reindeer", "aurora", "penguin", "walrus",
     "ice", "seal"),  # arctic
    ("papaya", "pineapple", "coconut", "island", "banana", "lagoon", "mango", "monsoon", "palm", "orchid",
     "beach", "parrot"),  # tropical
)
FILLERS = ("lamp", "ladder", "bucket", "blanket", "rope", "bottle", "chair", "basket", "clock", "kettle", "button",
           "pencil", "ribbon", "spoon", "towel", "mirror")
SIGHTINGS = ("seen", "sighted", "spotted", "observed")  # "<sighting>: <w1>, <w2> and <w3>", a field-notes line


def render_image(node: int, colour: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """(S, S, 3) uint8 image of ``node``: a random shape in ``colour`` (RGB; NaN = a random neutral grey)
    on a light grey background, with colour jitter and pixel noise; deterministic in (seed, node)."""
    rng = np.random.default_rng([p["seed"], 0x1A6E, node])
    s = p["image_size"]
    shape = int(rng.integers(len(SHAPES)))
    r = rng.uniform(0.18, 0.32) * s
    cx, cy = rng.uniform(r, s - r, 2)
    grey = rng.uniform(*GREY_LEVELS)
    jitter = rng.normal(0.0, p["colour_jitter"], 3)
    if np.isnan(colour).any():  # a neutral grey stays neutral: one jitter for all channels
        fg = np.full(3, grey + jitter[0])
    else:
        fg = np.asarray(colour, dtype=np.float64) + jitter
    bg = rng.uniform(*BACKGROUND_LEVELS)
    yy, xx = np.mgrid[0:s, 0:s] + 0.5
    if SHAPES[shape] == "circle":
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    elif SHAPES[shape] == "square":
        mask = (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
    else:
        mask = (yy >= cy - r) & (yy <= cy + r) & (np.abs(xx - cx) <= (yy - (cy - r)) / 2)
    img = np.where(mask[..., None], fg, bg) + rng.normal(0.0, p["image_noise"], (s, s, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render_images(folder: Path, colours: np.ndarray, p: dict[str, Any],
                  only: np.ndarray | None = None) -> tuple[str | None, ...]:
    """Paths ``folder/<node>.png`` for every node (of ``only``, a bool mask; None elsewhere), rendering the
    files that are missing (written to a temp file, then renamed)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out: list[str | None] = []
    for node in range(len(colours)):
        if only is not None and not only[node]:
            out.append(None)
            continue
        path = folder / f"{node}.png"
        if not path.is_file() or path.stat().st_size == 0:
            tmp = folder / f".{node}.{os.getpid()}.{threading.get_ident()}.tmp"  # then an atomic os.replace
            try:
                with open(tmp, "wb") as f:
                    Image.fromarray(render_image(node, colours[node], p), "RGB").save(f, format="PNG",
                                                                                      compress_level=1)
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        out.append(str(path))
    return tuple(out)
