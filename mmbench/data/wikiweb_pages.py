"""WikiWeb2M pages as mmbench stores them (``Page``, ``Section``, ``SectionImage``), the card's assembly parameters
and the text normalisation (``mmbench.data.wikiweb`` describes the formats)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mmbench.data.graph import EDGE_TYPES
from mmbench.errors import ConfigError, DataError
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
