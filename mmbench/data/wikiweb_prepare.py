"""``mmbench data prepare wikiweb-gen``: draw the card's page sample, resolve the images, write the compact format
under ``$MMBENCH_DATA`` (staged) with its MANIFEST."""

from __future__ import annotations

import collections
import gzip
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from mmbench.data import register_preparer
from mmbench.data.common import dataset_dir
from mmbench.data.wikiweb_graph import build_task_data, read_pages
from mmbench.data.wikiweb_pages import CARD_SPLITS, FORMAT, PAGE_FILES, Page, params_of
from mmbench.data.wikiweb_sources import MMGLSource, OfficialSource, PageRef, detect_source
from mmbench.errors import DataError
from mmbench.io import atomic_write_bytes, file_sha256, sha256_hex
from mmbench.tasks import TaskCard


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
    from mmbench.io import utc_now

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
