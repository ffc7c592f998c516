"""Reading WikiWeb2M releases: the official gzipped TFRecords and the MMGL/Graph4MM prepared parquet layout
(``mmbench.data.wikiweb`` describes both)."""

from __future__ import annotations

import collections
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmbench.data.tfrecord import ProtoError, SequenceExample, decode_sequence_example, read_records
from mmbench.data.wikiweb_pages import (
    MMGL_COLUMNS,
    SEQUENCE_FIELDS,
    SOURCE_SPLITS,
    SPLIT_NAMES,
    Page,
    Section,
    SectionImage,
    _split_name,
    _text,
)
from mmbench.errors import DataError


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
