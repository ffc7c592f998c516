"""WikiWeb2M section summarization (task ``wikiweb-gen``): readers, ``prepare``, the loader and the
per-target input assembly of Graph4MM / MMGL (docs/reference-models.md G3, G9).

Sources (``mmbench data prepare wikiweb-gen --from DIR`` detects which one DIR holds)
---------------------------------------------------------------------------------------
* **official** -- WikiWeb2M as google-research-datasets/wit publishes it: gzipped TFRecord
  ``SequenceExample`` files ``wikiweb2m-train.tfrecord.gz-0000{0..4}-of-00005``, ``wikiweb2m-val.tfrecord.gz``,
  ``wikiweb2m-test.tfrecord.gz`` (in DIR, DIR/raw or DIR/wikiweb2m/raw). Read without TensorFlow
  (``mmbench.data.tfrecord``). A page's split is its **official ``split`` context field**, never its position
  (docs/reference-models.md G9.14). ``page_id`` is the running record index over the files in the canonical order train
  shards 00000..00004, val, test (MMGL used ``glob`` order, which is not reproducible). Images are only URLs:
  they are recorded as *missing* unless an image folder in the MMGL naming (below) lies alongside
  (DIR/images, DIR/images_mini, or the same under raw/); such a folder only matches if its page ids were
  assigned in the same file order.
* **mmgl** -- the layout MMGL/Graph4MM's ``wikiweb2m/preprocess_data.py`` writes: one parquet file per split,
  ``wikiweb2m_{train,val,test}_large.parquet`` (Graph4MM's ``*_large_mini.parquet`` accepted too; ``_large``
  wins when both are complete), columns ``page_id, page_url, page_title, page_description, section_title,
  section_depth, section_heading, section_parent_index, section_summary, section_rest_sentence, image_url,
  image_caption`` (the last two flattened section x image arrays, reshaped to ``(sections, -1)``, '' = padding);
  ``section_id_split_large[_mini].pkl`` = ``{split: [(page_id, section_id), ...]}`` marks the summarization
  samples (read with a restricted unpickler); images ``images[_mini]/{page_id}_{section_id}_{image_id}.{ext}``
  with ``ext`` taken from the URL as MMGL does (a file with the same stem and another extension is accepted).
  The split of a page is the parquet file it is in, i.e. MMGL's split by page index (400k/100k/100k pages),
  which is *not* the official split: the manifest notes this.

Sample (``sample_pages``, ``sample_seed`` in the card's ``dataset.params``)
---------------------------------------------------------------------------
Graph4MM "randomly samples 10K pages" and publishes neither the seed nor the list, so mmbench draws and
records its own. Eligible pages: those with at least one section-summarization sample. The 10K pages are
split across train/valid/test in proportion to the eligible pages of each split in the source (largest
remainder; a split with eligible pages gets at least one page); ``sample_pages: 0`` takes every eligible page.
Within a split the sample is uniform without replacement: every eligible page gets the pseudo-random key
``sha256("{seed}:{page_url}")`` (``page:{page_id}`` when the URL is empty) and the pages with the smallest
keys are taken. The draw therefore does not depend on file order, and the official and MMGL sources of the
same pages and splits give the same sample. MANIFEST.json records the page-id lists per split, the sha256 of
each list (``"\\n".join(ids) + "\\n"``, ids in ascending order) and of the matching URL lists, and statistics.

Compact format (``$MMBENCH_DATA/wikiweb-gen/``, version ``mmbench-wikiweb/1``)
------------------------------------------------------------------------------
``pages-{train,valid,test}.jsonl.gz``: one JSON object per page, pages in ascending ``page_id``::

    {"page_id": 17, "url": "...", "title": "...", "description": "...", "split": "valid",
     "sections": [{"title": "...", "depth": 1, "heading_level": 2, "parent": 0,
                   "first_sentence": "...",      # section_clean_1st_sentence: the target
                   "rest": "...",                # section_rest_sentence
                   "sample": true,               # is_section_summarization_sample
                   "images": [{"url": "...", "caption": "...", "status": "found",
                               "file": "17_2_0.jpg"}]}]}

Texts are stored as in the source (whitespace normalised only when the graph is built). ``status`` is
``found`` (file present and decodable by PIL; ``file`` names it under ``images/``), ``missing`` (no file),
``unreadable`` (a file PIL cannot decode; skipped, never fatal), ``unchecked`` (a later image of a section
that already has a usable one: as MMGL's downloader, mmbench keeps the first usable image per section) or
``empty`` (an empty URL inside the list; MMGL's trailing '' padding is dropped). The position of an image in
its section's list is its ``image_id``.
``images/{page_id}_{section_id}_{image_id}.{ext}``: copies (or symlinks with ``--link``) of the used images.
``MANIFEST.json``: source, sampling, statistics, image counters, sha256 of the page files.

Graph (``load_wikiweb``)
------------------------
Per page: a *page* node (text ``title + ", " + description``); one *section* node per section (text = its rest
sentences, target = its first sentence); at most one *image* node per section: its first usable image
(``image`` = the file, ``text`` = the caption). With ``captions_without_image: true`` a section whose images
are all missing gets a caption-only image node (``image`` None) from its first image URL; the default
(false) follows the public code, where a caption enters only with its image. Undirected edges (both
directions stored, duplicates of the same type dropped): page--section for every section (text-text; the
public code links every target to its page), section i -- section i+1 (text-text, page order),
section -- parent section from ``section_parent_index`` (text-text; indices are positions in the page's
section list, out-of-range and self references ignored), section -- its image (text-image), and a chain
over the page's image nodes in section order (image-image). ``groups`` = the page's index in the graph;
``meta["page_ids"]`` maps it to ``page_id``. Split ``train``/``valid``/``test`` = the section nodes that are
summarization samples with a non-empty first sentence (the source calls ``valid`` ``val``). Texts are
whitespace-normalised as in the public code.

Input assembly (``assemble_fn(node) -> GraphSample``, docs/reference-models.md G3 with the G9 fixes)
---------------------------------------------------------------------------------------------------
Model-agnostic: limits are counts of nodes and characters, never tokens.

* ``nodes[0]``: the target section, text = its rest sentences only; the target sentence never appears.
* then the page node, then the target's image node (if any), then the page's other sections in page order,
  each followed by its image node. Other sections carry their full text ``first_sentence + ", " + rest``
  (``first_sentence`` alone when ``rest`` is empty, where the public code leaves a trailing ", "): as in
  the public code their first sentences are context, not answers; they come from the same page, hence the
  same split.
* ``max_text_neighbors`` (11) bounds the neighbours that carry text (page, sections, captions);
  ``max_image_neighbors`` (5) bounds the nodes that carry an image, the target's own image included (the
  public code reserves that slot even when the target has no image; mmbench does not pad). An image node
  that finds no text slot left keeps its image with ``text`` None; a section that finds no text slot is
  left out while its image may still come (as in the public code). Assembly stops when both are used up.
* ``max_node_chars`` (2048, about the 512-token neighbour-text limit of the public code) truncates every text;
  ``max_sample_chars`` (8192) bounds the characters of all texts of a sample, target first. Once it is spent,
  text-only nodes stop and image nodes come without text.
* leak guard (``scrub_target_sentence``, default true; the public code has none): an exact occurrence of the
  whitespace-normalised target sentence inside any neighbour text (e.g. a page description that repeats the
  root section's first sentence) is cut out, so that no node of the sample contains the answer verbatim.
* ``context_targets`` (default ``keep``, the published protocol): the other sections' first sentences are
  context, and since a page lies in one split, on a valid/test page they are the answers of the page's other
  valid/test samples. ``scrub`` drops the first sentence of every valid/test sample section from every
  context and cuts verbatim copies of those sentences out of every neighbour text; the record's protocol
  says which was used.
* edges: those of the page graph among the sample's nodes, indexed exactly as the nodes are stored (no
  +1 shift, G9.1), built from the very node list that is returned, images included (G9.2);
  every index is checked to be < len(nodes). ``hop``: BFS distance from the target in the page graph
  (G9.11), -1 if unreachable.
* sample id: ``"{page_id}_{section_index}"``.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import json
import os
import pickle
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmbench.api import GraphSample, SampleNode
from mmbench.data import register_loader, register_preparer
from mmbench.data.graph import EDGE_TYPES, GraphTaskData, MultimodalGraph
from mmbench.data.kg import dataset_dir, missing_data_message
from mmbench.data.subgraph import bfs_edge_list
from mmbench.data.tfrecord import ProtoError, SequenceExample, decode_sequence_example, read_records
from mmbench.errors import ConfigError, DataError
from mmbench.io import atomic_write_bytes, file_sha256, sha256_hex
from mmbench.tasks import TaskCard

FORMAT = "mmbench-wikiweb/1"
SOURCE_SPLITS = ("train", "val", "test")
SPLIT_NAMES = {"train": "train", "val": "valid", "validation": "valid", "valid": "valid", "test": "test"}
CARD_SPLITS = ("train", "valid", "test")
PAGE_FILES = {s: f"pages-{s}.jsonl.gz" for s in CARD_SPLITS}
TT, II, TI = (EDGE_TYPES.index(n) for n in ("text-text", "image-image", "text-image"))

DEFAULTS: dict[str, Any] = {
    "sample_pages": 10000, "sample_seed": 0, "max_text_neighbors": 11, "max_image_neighbors": 5,
    "max_node_chars": 2048, "max_sample_chars": 8192, "captions_without_image": False,
    "scrub_target_sentence": True, "context_targets": "keep",
}
CONTEXT_TARGETS = ("keep", "scrub")

CONTEXT_FIELDS = ("split", "page_url", "page_title", "clean_page_description")
SEQUENCE_FIELDS = ("section_title", "section_depth", "section_heading_level", "section_parent_index",
                   "section_clean_1st_sentence", "section_rest_sentence", "is_section_summarization_sample",
                   "section_image_url", "section_image_captions")
MMGL_COLUMNS = ("page_id", "page_url", "page_title", "page_description", "section_title", "section_depth",
                "section_heading", "section_parent_index", "section_summary", "section_rest_sentence",
                "image_url", "image_caption")


def params_of(card: TaskCard) -> dict[str, Any]:
    """The card's ``dataset.params`` over the defaults; unknown names are refused."""
    given = card.dataset.get("params") or {}
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"{card.path}: unknown wikiweb parameter(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **given}
    for k in ("sample_pages", "sample_seed", "max_text_neighbors", "max_image_neighbors", "max_node_chars",
              "max_sample_chars"):
        if not isinstance(p[k], int) or p[k] < 0:
            raise ConfigError(f"{card.path}: dataset.params.{k} must be a non-negative integer, got {p[k]!r}")
    if p["context_targets"] not in CONTEXT_TARGETS:
        raise ConfigError(f"{card.path}: dataset.params.context_targets must be keep or scrub, got "
                          f"{p['context_targets']!r}")
    if tuple(card.splits) != CARD_SPLITS:
        raise ConfigError(f"{card.path}: the wikiweb loader provides splits {list(CARD_SPLITS)}, "
                          f"the card lists {list(card.splits)}")
    return p


# ============================================================================ the per-page structure
@dataclass
class SectionImage:
    url: str
    caption: str
    status: str = "unchecked"  # found | missing | unreadable | unchecked
    file: str | None = None    # file name under images/ (compact format) when found


@dataclass
class Section:
    title: str
    depth: int
    heading_level: int
    parent: int
    first_sentence: str
    rest: str
    sample: bool
    images: list[SectionImage] = field(default_factory=list)


@dataclass
class Page:
    page_id: int
    url: str
    title: str
    description: str
    split: str  # card split name: train | valid | test
    sections: list[Section] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"page_id": self.page_id, "url": self.url, "title": self.title, "description": self.description,
                "split": self.split,
                "sections": [{"title": s.title, "depth": s.depth, "heading_level": s.heading_level,
                              "parent": s.parent, "first_sentence": s.first_sentence, "rest": s.rest,
                              "sample": s.sample,
                              "images": [{"url": i.url, "caption": i.caption, "status": i.status, "file": i.file}
                                         for i in s.images]}
                             for s in self.sections]}

    @staticmethod
    def from_json(d: dict[str, Any]) -> Page:
        return Page(page_id=int(d["page_id"]), url=d["url"], title=d["title"], description=d["description"],
                    split=d["split"],
                    sections=[Section(title=s["title"], depth=int(s["depth"]), heading_level=int(s["heading_level"]),
                                      parent=int(s["parent"]), first_sentence=s["first_sentence"], rest=s["rest"],
                                      sample=bool(s["sample"]),
                                      images=[SectionImage(url=i["url"], caption=i["caption"], status=i["status"],
                                                           file=i.get("file")) for i in s["images"]])
                              for s in d["sections"]])

    @property
    def num_samples(self) -> int:
        return sum(s.sample for s in self.sections)


def _text(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x).decode("utf-8", errors="replace")
    return str(x)


def _norm(text: str | None) -> str:
    return " ".join((text or "").split())


def _split_name(raw: str, where: str) -> str:
    if raw not in SPLIT_NAMES:
        raise DataError(f"{where}: split {raw!r} is not one of train, val, test")
    return SPLIT_NAMES[raw]


# ============================================================================ official TFRecords
def official_files(src: Path) -> list[Path]:
    """``wikiweb2m-*.tfrecord*`` in ``src`` (or src/raw, src/wikiweb2m/raw), train shards, val, test order."""
    for d in (src, src / "raw", src / "wikiweb2m" / "raw"):
        files = [p for p in d.glob("wikiweb2m-*.tfrecord*") if p.is_file()] if d.is_dir() else []
        if files:
            rank = {"train": 0, "val": 1, "test": 2}
            return sorted(files, key=lambda p: (rank.get(p.name.split("-")[1].split(".")[0], 3), p.name))
    return []


def iter_official_records(files: list[Path], verify_crc: bool = False) -> Iterator[tuple[int, str, bytes]]:
    """(page_id, "file: record n", serialised SequenceExample) over ``files`` in order."""
    page_id = 0
    for path in files:
        for n, data in enumerate(read_records(path, verify_crc=verify_crc)):
            yield page_id, f"{path}: record {n}", data
            page_id += 1


def _decode(data: bytes, where: str, context_keys: Any = None, sequence_keys: Any = None) -> SequenceExample:
    try:
        return decode_sequence_example(data, context_keys, sequence_keys)
    except ProtoError as e:
        raise DataError(f"{where}: not a valid SequenceExample ({e})") from None


def _ctx(se: SequenceExample, key: str) -> Any:
    f = se.context.get(key)
    return f.values[0] if f is not None and f.values else None


def page_from_sequence_example(se: SequenceExample, page_id: int, where: str) -> Page:
    """The per-page structure of one official WikiWeb2M record."""
    fl = se.feature_lists
    n = len(fl.get("section_title", []))
    for key in SEQUENCE_FIELDS:
        if key in fl and len(fl[key]) != n:
            raise DataError(f"{where}: feature list {key} has {len(fl[key])} entries, section_title has {n}")

    def one(key: str, i: int, default: Any) -> Any:
        feats = fl.get(key)
        return feats[i].values[0] if feats and feats[i].values else default

    def many(key: str, i: int) -> list[Any]:
        feats = fl.get(key)
        return list(feats[i].values) if feats else []

    sections = []
    for i in range(n):
        urls, caps = many("section_image_url", i), many("section_image_captions", i)
        images = [SectionImage(url=_text(u), caption=_text(caps[j]) if j < len(caps) else "")
                  for j, u in enumerate(urls)]
        sections.append(Section(
            title=_text(one("section_title", i, b"")), depth=int(one("section_depth", i, 0)),
            heading_level=int(one("section_heading_level", i, 0)),
            parent=int(one("section_parent_index", i, -1)),
            first_sentence=_text(one("section_clean_1st_sentence", i, b"")),
            rest=_text(one("section_rest_sentence", i, b"")),
            sample=bool(one("is_section_summarization_sample", i, 0)), images=images))
    split = _ctx(se, "split")
    if split is None:
        raise DataError(f"{where}: the context feature 'split' is missing")
    return Page(page_id=page_id, url=_text(_ctx(se, "page_url")), title=_text(_ctx(se, "page_title")),
                description=_text(_ctx(se, "clean_page_description")), split=_split_name(_text(split), where),
                sections=sections)


def read_official_pages(files: list[Path], wanted: set[int] | None = None,
                        verify_crc: bool = False) -> Iterator[Page]:
    """Pages of the official files (all, or those whose running ``page_id`` is in ``wanted``)."""
    last = max(wanted) if wanted else None
    for page_id, where, data in iter_official_records(files, verify_crc):
        if wanted is not None:
            if last is None or page_id > last:
                return
            if page_id not in wanted:
                continue
        yield page_from_sequence_example(_decode(data, where), page_id, where)


@dataclass
class PageRef:
    """What sampling needs of a page."""

    page_id: int
    split: str  # card split name
    url: str
    samples: int


class OfficialSource:
    kind = "official"

    def __init__(self, files: list[Path], image_dir: Path | None):
        self.files, self.image_dir, self.notes = files, image_dir, []
        if image_dir is None:
            self.notes.append("official TFRecords hold image URLs only and no image folder in the MMGL naming "
                              "lies alongside: every image is counted as missing")
        else:
            self.notes.append(f"images from {image_dir}, matched by page_id = record index in the order "
                              f"{', '.join(p.name for p in files)}")

    def describe(self) -> dict[str, Any]:
        return {"format": "official", "files": {p.name: p.stat().st_size for p in self.files},
                "image_dir": str(self.image_dir) if self.image_dir else None}

    def index(self) -> Iterator[PageRef]:
        for page_id, where, data in iter_official_records(self.files):
            se = _decode(data, where, ("split", "page_url"), ("is_section_summarization_sample",))
            split = _ctx(se, "split")
            if split is None:
                raise DataError(f"{where}: the context feature 'split' is missing")
            flags = se.feature_lists.get("is_section_summarization_sample", [])
            yield PageRef(page_id, _split_name(_text(split), where), _text(_ctx(se, "page_url")),
                          sum(1 for f in flags if f.values and f.values[0]))

    def pages(self, wanted: set[int]) -> Iterator[Page]:
        return read_official_pages(self.files, wanted)


# ============================================================================ MMGL prepared layout
class _SplitUnpickler(pickle.Unpickler):
    """Only the containers a ``{split: [(page_id, section_id), ...]}`` pickle needs."""

    ALLOWED = {("collections", "defaultdict"), ("builtins", "list"), ("builtins", "dict"), ("builtins", "tuple"),
               ("builtins", "int"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_split_pickle(path: Path) -> dict[str, list[tuple[int, int]]]:
    """``section_id_split_large[_mini].pkl`` -> {source split: [(page_id, section_id), ...]}."""
    try:
        with open(path, "rb") as f:
            raw = _SplitUnpickler(f).load()
    except Exception as e:  # noqa: BLE001  (any unpickling failure is a data problem)
        raise DataError(f"{path}: cannot read the split pickle ({type(e).__name__}: {e})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a dict {{split: [(page_id, section_id), ...]}}, got {type(raw).__name__}")
    out: dict[str, list[tuple[int, int]]] = {}
    for split, pairs in raw.items():
        try:
            out[str(split)] = [(int(p), int(s)) for p, s in pairs]
        except (TypeError, ValueError):
            raise DataError(f"{path}: split {split!r} must list (page_id, section_id) pairs") from None
    return out


@dataclass
class MMGLLayout:
    parquets: dict[str, Path]  # source split -> file
    pickle: Path
    image_dir: Path | None
    variant: str  # "large" or "large_mini"


def mmgl_layout(src: Path) -> MMGLLayout | None:
    for d in (src, src / "raw", src / "wikiweb2m" / "raw"):
        for variant, images in (("large", ("images", "images_mini")), ("large_mini", ("images_mini", "images"))):
            parquets = {s: d / f"wikiweb2m_{s}_{variant}.parquet" for s in SOURCE_SPLITS}
            pkl = d / f"section_id_split_{variant}.pkl"
            if all(p.is_file() for p in parquets.values()) and pkl.is_file():
                image_dir = next((d / n for n in images if (d / n).is_dir()), None)
                return MMGLLayout(parquets, pkl, image_dir, variant)
    return None


def _seq(x: Any) -> list[Any]:
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return list(x)
    if hasattr(x, "tolist"):
        v = x.tolist()
        return v if isinstance(v, list) else [v]
    return [x]


def page_from_mmgl_row(row: dict[str, Any], split: str, samples: set[int], where: str) -> Page:
    """The per-page structure of one row of a ``wikiweb2m_*_large.parquet`` file."""
    titles = _seq(row.get("section_title"))
    n = len(titles)
    cols = {c: _seq(row.get(c)) for c in ("section_depth", "section_heading", "section_parent_index",
                                          "section_summary", "section_rest_sentence")}
    for c, v in cols.items():
        if len(v) != n:
            raise DataError(f"{where}: column {c} has {len(v)} entries, section_title has {n}")
    urls, caps = _seq(row.get("image_url")), _seq(row.get("image_caption"))
    if n == 0 and urls:
        raise DataError(f"{where}: {len(urls)} image URLs but no sections")
    if n and (len(urls) % n or len(caps) != len(urls)):
        raise DataError(f"{where}: image_url ({len(urls)}) / image_caption ({len(caps)}) cannot be reshaped "
                        f"to ({n}, -1)")
    per = len(urls) // n if n else 0
    sections = []
    for i in range(n):
        images = [SectionImage(url=_text(urls[i * per + j]), caption=_text(caps[i * per + j]))
                  for j in range(per)]
        sections.append(Section(title=_text(titles[i]), depth=int(cols["section_depth"][i]),
                                heading_level=int(cols["section_heading"][i]),
                                parent=int(cols["section_parent_index"][i]),
                                first_sentence=_text(cols["section_summary"][i]),
                                rest=_text(cols["section_rest_sentence"][i]), sample=i in samples, images=images))
    return Page(page_id=int(row["page_id"]), url=_text(row.get("page_url")), title=_text(row.get("page_title")),
                description=_text(row.get("page_description")), split=split, sections=sections)


def _parquet_batches(path: Path, columns: list[str]) -> Iterator[list[dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading the MMGL parquet layout needs pyarrow: pip install pyarrow") from None
    try:
        pf = pq.ParquetFile(path)
        names = set(pf.schema_arrow.names)
        missing = [c for c in columns if c not in names]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)} (expected the MMGL layout: "
                            f"{', '.join(MMGL_COLUMNS)})")
        for batch in pf.iter_batches(batch_size=256, columns=columns):
            yield batch.to_pylist()
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001  (pyarrow raises many types for corrupt files)
        raise DataError(f"{path}: cannot read the parquet file ({type(e).__name__}: {e})") from None


class MMGLSource:
    kind = "mmgl"

    def __init__(self, layout: MMGLLayout):
        self.layout, self.image_dir = layout, layout.image_dir
        self.samples: dict[int, set[int]] = collections.defaultdict(set)
        self.pickle_split: dict[int, str] = {}
        for split, pairs in read_split_pickle(layout.pickle).items():
            for p, s in pairs:
                self.samples[p].add(s)
                self.pickle_split[p] = split
        self.notes = [f"MMGL layout ({layout.variant}): splits are the parquet files, i.e. MMGL's split by page "
                      "index (pages < 400k train, < 500k val, else test), not the official WikiWeb2M split"]
        if layout.image_dir is None:
            self.notes.append("no images/ or images_mini/ folder: every image is counted as missing")
        self._mismatch = 0

    def describe(self) -> dict[str, Any]:
        files = [*self.layout.parquets.values(), self.layout.pickle]
        return {"format": "mmgl", "variant": self.layout.variant, "files": {p.name: p.stat().st_size for p in files},
                "image_dir": str(self.image_dir) if self.image_dir else None}

    def index(self) -> Iterator[PageRef]:
        seen: set[int] = set()
        for split in SOURCE_SPLITS:
            path = self.layout.parquets[split]
            for rows in _parquet_batches(path, ["page_id", "page_url"]):
                for row in rows:
                    pid = int(row["page_id"])
                    if pid in seen:
                        raise DataError(f"{path}: page_id {pid} occurs twice in the parquet files")
                    seen.add(pid)
                    if pid in self.pickle_split and self.pickle_split[pid] != split:
                        self._mismatch += 1
                    yield PageRef(pid, SPLIT_NAMES[split], _text(row["page_url"]), len(self.samples.get(pid, ())))
        if self._mismatch:
            self.notes.append(f"{self._mismatch} pages are listed under another split in {self.layout.pickle.name} "
                              f"than the parquet file they are in; the parquet file decides")

    def pages(self, wanted: set[int]) -> Iterator[Page]:
        for split in SOURCE_SPLITS:
            path = self.layout.parquets[split]
            for rows in _parquet_batches(path, list(MMGL_COLUMNS)):
                for row in rows:
                    pid = int(row["page_id"])
                    if pid in wanted:
                        yield page_from_mmgl_row(row, SPLIT_NAMES[split], self.samples.get(pid, set()),
                                                 f"{path}: page_id {pid}")


def _image_dir_near(src: Path) -> Path | None:
    for d in (src, src / "raw", src / "wikiweb2m" / "raw"):
        for name in ("images", "images_mini"):
            if (d / name).is_dir():
                return d / name
    return None


def detect_source(src: Path) -> OfficialSource | MMGLSource:
    files = official_files(src)
    if files:
        return OfficialSource(files, _image_dir_near(src))
    layout = mmgl_layout(src)
    if layout is not None:
        return MMGLSource(layout)
    raise DataError(f"--from {src}: found neither the official WikiWeb2M TFRecords (wikiweb2m-train.tfrecord.gz-"
                    f"0000?-of-00005, wikiweb2m-val.tfrecord.gz, wikiweb2m-test.tfrecord.gz) nor the MMGL "
                    f"prepared layout (wikiweb2m_{{train,val,test}}_large[_mini].parquet + "
                    f"section_id_split_large[_mini].pkl) in it, its raw/ or its wikiweb2m/raw/")


# ============================================================================ sampling
def _key(seed: int, ref: PageRef) -> str:
    return hashlib.sha256(f"{seed}:{ref.url or f'page:{ref.page_id}'}".encode()).hexdigest()


def quotas(eligible: dict[str, int], n: int) -> dict[str, int]:
    """Pages per split: ``n`` shared in proportion to ``eligible`` (largest remainder), at least one for every
    split with eligible pages, never more than it has; ``n == 0`` or ``n >= total``: everything."""
    total = sum(eligible.values())
    if n == 0 or n >= total:
        return dict(eligible)
    exact = {s: n * e / total for s, e in eligible.items()}
    out = {s: int(x) for s, x in exact.items()}
    for s in sorted(exact, key=lambda s: (-(exact[s] - out[s]), CARD_SPLITS.index(s)))[:n - sum(out.values())]:
        out[s] += 1
    for s, e in eligible.items():
        if e and not out[s]:
            donor = max(out, key=lambda t: (out[t], -CARD_SPLITS.index(t)))
            if out[donor] > 1:
                out[donor] -= 1
                out[s] = 1
    return out


def sample_pages(refs: list[PageRef], n: int, seed: int) -> dict[str, list[int]]:
    """The sampled page ids per card split (ascending); see the module docstring."""
    eligible: dict[str, list[PageRef]] = {s: [] for s in CARD_SPLITS}
    for r in refs:
        if r.samples > 0:
            eligible[r.split].append(r)
    q = quotas({s: len(v) for s, v in eligible.items()}, n)
    out = {}
    for s, rs in eligible.items():
        ranked = sorted(rs, key=lambda r: (_key(seed, r), r.page_id))
        out[s] = sorted(r.page_id for r in ranked[:q[s]])
    return out


def _list_sha(items: list[Any]) -> str:
    return sha256_hex("".join(f"{x}\n" for x in items))


# ============================================================================ prepare
def _image_index(image_dir: Path | None) -> dict[str, list[str]]:
    """File stem -> file names in the image folder (one listing instead of a stat per URL)."""
    out: dict[str, list[str]] = collections.defaultdict(list)
    if image_dir is not None:
        with os.scandir(image_dir) as it:
            for e in it:
                if e.is_file():
                    out[os.path.splitext(e.name)[0]].append(e.name)
    return out


def _readable(path: Path) -> bool:
    try:
        from PIL import Image
    except ImportError:
        raise DataError("checking WikiWeb2M images needs Pillow: pip install pillow") from None
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:  # noqa: BLE001  (PIL raises many types for bad files; counted, never fatal)
        return False


def resolve_images(page: Page, image_dir: Path | None, index: dict[str, list[str]], dest: Path | None,
                   link: bool, counts: collections.Counter) -> None:
    """Per section, check the images in order until one is usable (MMGL keeps the first image per section
    that opens); copy/link it to ``dest`` as ``{page_id}_{section_id}_{image_id}.{ext}``."""
    for sid, sec in enumerate(page.sections):
        usable = False
        for iid, img in enumerate(sec.images):
            if not img.url:
                img.status = "empty"  # MMGL's '' padding (trailing, dropped below) or an empty URL
                continue
            counts["urls"] += 1
            if usable:
                img.status = "unchecked"
                counts["unchecked"] += 1
                continue
            stem = f"{page.page_id}_{sid}_{iid}"
            ext = os.path.splitext(img.url)[1][1:]
            names = index.get(stem, [])
            name = f"{stem}.{ext}" if f"{stem}.{ext}" in names else (sorted(names)[0] if names else None)
            if name is None or image_dir is None:
                img.status = "missing"
            elif not _readable(image_dir / name):
                img.status = "unreadable"
            else:
                img.status, img.file, usable = "found", name, True
                if dest is not None:
                    target = dest / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if link:
                        os.symlink((image_dir / name).resolve(), target)
                    else:
                        shutil.copyfile(image_dir / name, target)
            counts[img.status] += 1
        while sec.images and sec.images[-1].status == "empty":
            sec.images.pop()  # trailing padding only, so list positions stay image ids
        counts["sections_with_image"] += usable


@register_preparer("wikiweb")
def prepare(card: TaskCard, src: Path, link: bool = False, verify: bool = True) -> dict[str, Any]:
    """Detect the source format in ``src``, draw the card's page sample, convert it to the compact format
    under ``$MMBENCH_DATA/<dir>`` (staged) and return the manifest."""
    from mmbench.data.prepare import staged

    params = params_of(card)
    src = Path(src).expanduser()
    if not src.is_dir():
        raise DataError(f"--from {src}: not a directory")
    source = detect_source(src)
    return staged(dataset_dir(card), lambda stage: _build(card, params, src, source, stage, link), src, verify)


def _build(card: TaskCard, params: dict[str, Any], src: Path, source: OfficialSource | MMGLSource, stage: Path,
           link: bool) -> dict[str, Any]:
    from mmbench.results import utc_now

    refs = list(source.index())
    per_split = {s: sum(r.split == s for r in refs) for s in CARD_SPLITS}
    eligible = {s: sum(r.split == s and r.samples > 0 for r in refs) for s in CARD_SPLITS}
    chosen = sample_pages(refs, params["sample_pages"], params["sample_seed"])
    wanted = {pid for ids in chosen.values() for pid in ids}
    if not wanted:
        raise DataError(f"--from {src}: no page has a section-summarization sample")
    url_of = {r.page_id: r.url for r in refs if r.page_id in wanted}
    counts: collections.Counter = collections.Counter()
    image_index = _image_index(source.image_dir)
    pages: dict[str, list[Page]] = {s: [] for s in CARD_SPLITS}
    for page in source.pages(wanted):
        resolve_images(page, source.image_dir, image_index, stage / "images", link, counts)
        pages[page.split].append(page)
    got = {p.page_id for ps in pages.values() for p in ps}
    if got != wanted:
        raise DataError(f"--from {src}: {len(wanted - got)} sampled pages were not found on the second pass "
                        f"(did the files change during prepare?)")
    files = {}
    for s in CARD_SPLITS:
        pages[s].sort(key=lambda p: p.page_id)
        text = "".join(json.dumps(p.to_json(), ensure_ascii=False, sort_keys=True) + "\n" for p in pages[s])
        atomic_write_bytes(stage / PAGE_FILES[s], gzip.compress(text.encode("utf-8"), mtime=0))
        files[PAGE_FILES[s]] = file_sha256(stage / PAGE_FILES[s])
    stats: dict[str, Any] = {
        s: {"pages": len(pages[s]), "sections": sum(len(p.sections) for p in pages[s]),
            "samples": sum(p.num_samples for p in pages[s])} for s in CARD_SPLITS}
    stats["images"] = {k: counts[k] for k in ("urls", "found", "missing", "unreadable", "unchecked",
                                              "sections_with_image")}
    image_files = sorted(p.name for p in (stage / "images").iterdir()) if (stage / "images").is_dir() else []
    notes = list(source.notes)
    if params["sample_pages"] > sum(eligible.values()):
        notes.append(f"sample_pages is {params['sample_pages']} but only {sum(eligible.values())} pages have a "
                     f"section-summarization sample: all of them were taken")
    task = build_task_data(card.name, read_pages(stage), stage / "images", params)  # the staged copy must load
    notes += task.notes
    return {
        "task": card.name, "format": FORMAT, "prepared_at": utc_now(), "source": str(src.resolve()),
        "source_format": source.kind, "source_files": source.describe(), "linked": link,
        "params": {"sample_pages": params["sample_pages"], "sample_seed": params["sample_seed"]},
        "sampling": {
            "method": "per split, proportional to the eligible pages (largest remainder, >= 1 per non-empty "
                      "split); within a split the pages with the smallest sha256('{seed}:{page_url}')",
            "seed": params["sample_seed"], "requested": params["sample_pages"],
            "pages_in_source": per_split, "eligible_pages": eligible,
            "page_ids": chosen,
            "page_ids_sha256": {s: _list_sha(ids) for s, ids in chosen.items()},
            "page_urls_sha256": {s: _list_sha([url_of[i] for i in ids]) for s, ids in chosen.items()},
            "list_hash": "sha256 of the ids (or URLs, in page-id order), one per line, each line ending in \\n"},
        "stats": stats, "graph": task.stats(), "notes": notes, "files": files,
        "images": {"count": len(image_files),
                   "sha256": sha256_hex("".join(f"{n} {file_sha256(stage / 'images' / n)}\n" for n in image_files))},
    }


# ============================================================================ loader
def _status(card: TaskCard) -> tuple[bool, str]:
    d = dataset_dir(card)
    if all((d / f).exists() for f in PAGE_FILES.values()):
        return True, f"prepared at {d}"
    return False, f"not prepared (run: mmbench data prepare {card.name} --from DIR)"


def read_pages(d: Path) -> dict[str, list[Page]]:
    out = {}
    for s, name in PAGE_FILES.items():
        try:
            with gzip.open(d / name, "rt", encoding="utf-8") as f:
                out[s] = [Page.from_json(json.loads(line)) for line in f if line.strip()]
        except (OSError, EOFError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise DataError(f"{d / name}: not a valid {FORMAT} page file ({type(e).__name__}: {e}); "
                            f"re-run mmbench data prepare") from None
    return out


@register_loader("wikiweb", _status)
def load_wikiweb(card: TaskCard, verify: bool = True) -> GraphTaskData:
    """The prepared sample as a ``GraphTaskData`` whose ``assemble_fn`` builds the reference inputs.

    ``verify``: the MANIFEST must exist, record the card's ``sample_pages``/``sample_seed`` and the sha256 of
    the page files; otherwise DataError (or, with ``verify=False``, a note and ``verified=False``)."""
    params = params_of(card)
    d = dataset_dir(card)
    missing = [f for f in PAGE_FILES.values() if not (d / f).exists()]
    if missing:
        raise DataError(missing_data_message(card, f"the prepared WikiWeb2M sample is missing ({', '.join(missing)} "
                                                   f"not in {d})"))
    problems = manifest_problems(d, params)
    notes: list[str] = []
    if problems:
        msg = f"task {card.name}: " + "; ".join(problems) + "."
        if verify:
            raise DataError(msg + f" Re-run `mmbench data prepare {card.name} --from DIR`, or pass "
                                  "--unverified-data to run anyway (the result is then marked unverified).")
        notes.append(msg)
    task = build_task_data(card.name, read_pages(d), d / "images", params)
    task.verified = not problems
    task.notes += notes
    return task


def manifest_problems(d: Path, params: dict[str, Any]) -> list[str]:
    path = d / "MANIFEST.json"
    if not path.exists():
        return [f"{path} is missing"]
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        return [f"{path} is not valid JSON ({e})"]
    problems = []
    if manifest.get("format") != FORMAT:
        problems.append(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    want = {"sample_pages": params["sample_pages"], "sample_seed": params["sample_seed"]}
    if manifest.get("params") != want:
        problems.append(f"the data was prepared with {manifest.get('params')}, the card asks for {want}")
    for name, sha in (manifest.get("files") or {}).items():
        if not (d / name).exists() or file_sha256(d / name) != sha:
            problems.append(f"{d / name} differs from the file prepare wrote (sha256)")
    return problems


# ============================================================================ graph and assembly
@dataclass
class _PageNodes:
    page_id: int
    page_node: int
    sections: list[int]
    images: list[int | None]  # image node per section
    edges: list[tuple[int, int, int]]  # global (u, v, type), both directions


def build_task_data(task: str, pages: dict[str, list[Page]], image_root: Path,
                    params: dict[str, Any]) -> GraphTaskData:
    """The page graphs of all splits as one ``MultimodalGraph`` plus the assembly closure."""
    texts: list[str | None] = []
    images: list[str | None] = []
    kinds: list[str] = []
    targets: list[str | None] = []
    groups: list[int] = []
    edges: list[tuple[int, int, int]] = []
    splits: dict[str, list[int]] = {s: [] for s in CARD_SPLITS}
    layout: list[_PageNodes] = []
    where: dict[int, tuple[int, int]] = {}  # section node -> (page index, section index)
    notes: list[str] = []
    absent_files = empty_targets = 0

    def add(text: str | None, image: str | None, kind: str, target: str | None, g: int) -> int:
        texts.append(text)
        images.append(image)
        kinds.append(kind)
        targets.append(target)
        groups.append(g)
        return len(texts) - 1

    for split in CARD_SPLITS:
        for page in pages[split]:
            g = len(layout)
            pn = add(_norm(f"{page.title}, {page.description}"), None, "page", None, g)
            secs = [add(_norm(s.rest), None, "section", _norm(s.first_sentence), g) for s in page.sections]
            imgs: list[int | None] = []
            for s in page.sections:
                found = next((i for i in s.images if i.status == "found" and i.file), None)
                path = None
                if found is not None:
                    p = image_root / found.file
                    if p.exists():
                        path = str(p)
                    else:
                        absent_files += 1
                        found = None
                if found is None and params["captions_without_image"]:
                    found = next((i for i in s.images if i.url and _norm(i.caption)), None)
                imgs.append(None if found is None else add(_norm(found.caption) or None, path, "image", None, g))
            pe: set[tuple[int, int, int]] = set()
            ordered: list[tuple[int, int, int]] = []
            for i, sn in enumerate(secs):
                _link(pe, ordered, pn, sn, TT)
                if i + 1 < len(secs):
                    _link(pe, ordered, sn, secs[i + 1], TT)
                par = page.sections[i].parent
                if 0 <= par < len(secs) and par != i:
                    _link(pe, ordered, sn, secs[par], TT)
                if imgs[i] is not None:
                    _link(pe, ordered, sn, imgs[i], TI)
            chain = [x for x in imgs if x is not None and images[x] is not None]
            if params["captions_without_image"]:
                chain = [x for x in imgs if x is not None]
            for a, b in zip(chain, chain[1:], strict=False):
                _link(pe, ordered, a, b, II)
            edges += ordered
            layout.append(_PageNodes(page.page_id, pn, secs, imgs, ordered))
            for i, (s, sn) in enumerate(zip(page.sections, secs, strict=True)):
                where[sn] = (g, i)
                if s.sample:
                    if targets[sn]:
                        splits[split].append(sn)
                    else:
                        empty_targets += 1
    if absent_files:
        notes.append(f"{absent_files} image files listed in the page files are absent under {image_root}; "
                     f"their sections have no image")
    if empty_targets:
        notes.append(f"{empty_targets} summarization samples with an empty first sentence were left out")
    ei = torch.tensor([[u for u, _, _ in edges], [v for _, v, _ in edges]], dtype=torch.long).reshape(2, -1)
    graph = MultimodalGraph(
        num_nodes=len(texts), texts=tuple(texts), images=tuple(images), kinds=tuple(kinds), edge_index=ei,
        edge_type=torch.tensor([t for _, _, t in edges], dtype=torch.long), targets=tuple(targets),
        splits={s: torch.tensor(v, dtype=torch.long) for s, v in splits.items()},
        groups=torch.tensor(groups, dtype=torch.long),
        meta={"page_ids": [p.page_id for p in layout], "image_root": str(image_root),
              "describe": {"pages": len(layout), "assembly": {k: params[k] for k in (
                  "max_text_neighbors", "max_image_neighbors", "max_node_chars", "max_sample_chars",
                  "captions_without_image", "scrub_target_sentence", "context_targets")}},
              "context_targets": params["context_targets"]})
    assembler = Assembler(graph, layout, where, params)
    max_nodes = 1 + params["max_text_neighbors"] + params["max_image_neighbors"]
    return GraphTaskData(task=task, graph=graph, hops=2, max_nodes=max_nodes, assemble_fn=assembler, notes=notes)


def _link(seen: set[tuple[int, int, int]], out: list[tuple[int, int, int]], u: int, v: int, t: int) -> None:
    """Both directions of an undirected edge, each once."""
    for e in ((u, v, t), (v, u, t)):
        if e not in seen:
            seen.add(e)
            out.append(e)


class Assembler:
    """``assemble(node) -> GraphSample`` for a section node (see the module docstring)."""

    def __init__(self, graph: MultimodalGraph, pages: list[_PageNodes], where: dict[int, tuple[int, int]],
                 params: dict[str, Any]):
        self.graph, self.pages, self.where, self.p = graph, pages, where, params
        # context_targets: scrub -- the valid/test target sentences never enter any sample's context
        self.held = {int(v) for s in ("valid", "test") for v in graph.splits.get(s, torch.zeros(0, dtype=torch.long))}

    def __call__(self, node: int) -> GraphSample:
        if node not in self.where:
            raise ValueError(f"node {node} is not a section node of the WikiWeb2M graph")
        g, sidx = self.where[node]
        page = self.pages[g]
        G, p = self.graph, self.p
        answer = G.targets[node] if G.targets is not None else None
        cut = [answer] if p["scrub_target_sentence"] and answer else []
        scrub_held = p["context_targets"] == "scrub"
        if scrub_held:
            cut += [G.targets[sn] for sn in page.sections if sn in self.held and G.targets[sn]]
        budget = [p["max_sample_chars"]]

        def clip(text: str | None) -> str | None:
            if text is None:
                return None
            for sentence in cut:
                if sentence in text:
                    text = _norm(text.replace(sentence, " "))
            t = text[:min(p["max_node_chars"], budget[0])]
            budget[0] -= len(t)
            return t

        chosen: list[tuple[int, str | None]] = [(node, clip(G.texts[node] or ""))]
        text_left, image_left = p["max_text_neighbors"], p["max_image_neighbors"]

        def offer_text_node(v: int, text: str) -> None:
            nonlocal text_left
            if text_left > 0 and budget[0] > 0:
                chosen.append((v, clip(text)))
                text_left -= 1

        def offer_image_node(v: int | None) -> None:
            nonlocal text_left, image_left
            if v is None:
                return
            has_image = G.images[v] is not None
            caption = G.texts[v]
            if has_image:
                if image_left <= 0:
                    return
                image_left -= 1
                if caption and text_left > 0 and budget[0] > 0:
                    text_left -= 1
                    chosen.append((v, clip(caption)))
                else:
                    chosen.append((v, None))
            elif caption:
                offer_text_node(v, caption)

        offer_text_node(page.page_node, G.texts[page.page_node] or "")
        offer_image_node(page.images[sidx])
        for i, sn in enumerate(page.sections):
            if i == sidx:
                continue
            if text_left <= 0 and image_left <= 0:
                break
            first, rest = G.targets[sn] or "", G.texts[sn] or ""
            if scrub_held and sn in self.held:
                first = ""  # another held-out sample's answer: not context under context_targets: scrub
            offer_text_node(sn, f"{first}, {rest}" if first and rest else first or rest)
            offer_image_node(page.images[i])

        ids = [v for v, _ in chosen]
        pos = {v: i for i, v in enumerate(ids)}
        hops = self._hops(page, node)
        nodes = tuple(SampleNode(text=t, image=G.images[v], kind=G.kinds[v], hop=hops.get(v, -1), node=v)
                      for v, t in chosen)
        local = [(pos[u], pos[v], t) for u, v, t in page.edges if u in pos and v in pos]
        edge_index = torch.tensor([[a for a, _, _ in local], [b for _, b, _ in local]], dtype=torch.long).reshape(2, -1)
        if edge_index.numel():
            assert int(edge_index.max()) < len(nodes) and int(edge_index.min()) >= 0, "edge index out of range"
        return GraphSample(id=f"{page.page_id}_{sidx}", nodes=nodes, edge_index=edge_index,
                           edge_type=torch.tensor([t for _, _, t in local], dtype=torch.long),
                           edge_type_names=G.edge_type_names)

    @staticmethod
    def _hops(page: _PageNodes, source: int) -> dict[int, int]:
        """BFS distance from ``source`` over the page's edges (stored both ways, so following them both ways
        changes nothing); {global node id: hop} for the nodes reachable from ``source``."""
        ei = np.array([[u for u, _, _ in page.edges], [v for _, v, _ in page.edges]], dtype=np.int64)
        return bfs_edge_list(ei, source)
