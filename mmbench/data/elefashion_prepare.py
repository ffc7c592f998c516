"""``mmbench data prepare`` for MM-GRAPH releases (Ele-fashion): gather, verify, stage under ``$MMBENCH_DATA``."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path
from typing import Any

from mmbench.data import register_preparer
from mmbench.data.common import dataset_dir
from mmbench.data.elefashion import load_mm_graph_from
from mmbench.data.elefashion_files import (
    FEATURE_SUFFIX,
    IMAGE_SUFFIXES,
    LABELS_FILE,
    MAPPING_FILE,
    REQUIRED,
    _image_dir_candidates,
    _release,
    _text_candidates,
    image_index,
)
from mmbench.data.prepare import place, staged
from mmbench.errors import DataError
from mmbench.io import file_sha256, utc_now
from mmbench.tasks import TaskCard


def _find_release_dir(src: Path, release: str) -> Path:
    for cand in (src, src / release, src / "mm-graph" / release):
        if (cand / LABELS_FILE).exists():
            return cand
    hits = sorted(p.parent for p in src.rglob(LABELS_FILE))
    named = [h for h in hits if release.lower() in str(h).lower()]
    if named or hits:
        return (named or hits)[0]
    raise DataError(f"--from {src}: found no {LABELS_FILE} (expected the MM-GRAPH layout: {release}/ with "
                    f"{', '.join(REQUIRED)}, or those files directly in the folder)")


def _extract_images(tar_path: Path, dest: Path, notes: list[str]) -> int:
    """Image members of ``tar_path`` into ``dest`` under their base names (no paths from the archive)."""
    count = dupes = 0
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path) as tar:
        for m in tar:
            name = Path(m.name).name
            if not m.isfile() or Path(name).suffix.lower() not in IMAGE_SUFFIXES or name.startswith("."):
                continue
            target = dest / name
            if target.exists():
                dupes += 1
                continue
            f = tar.extractfile(m)
            if f is None:
                continue
            with f, open(target, "wb") as out:
                shutil.copyfileobj(f, out)
            count += 1
    if dupes:
        notes.append(f"{tar_path.name}: {dupes:,} image(s) repeat a file name already extracted; skipped")
    return count


@register_preparer("mm-graph")
def prepare(card: TaskCard, src: Path, link: bool = False, verify: bool = True) -> dict[str, Any]:
    """Gather an MM-GRAPH release from ``src`` (a Hub download with ``<release>/`` and ``raw-data/``, or
    a flat folder), verify it, and move it under ``$MMBENCH_DATA/<dataset.dir>`` with a MANIFEST."""
    src = Path(src).expanduser()
    if not src.is_dir():
        raise DataError(f"--from {src}: not a directory")
    release = _release(card)
    root = _find_release_dir(src, release)
    return staged(dataset_dir(card), lambda stage: _stage_and_verify(card, src, root, stage, link, verify), src,
                  verify)


def _stage_and_verify(card: TaskCard, src: Path, root: Path, dest: Path, link: bool,
                      verify: bool = True) -> dict[str, Any]:
    release = _release(card)
    copied: dict[str, str] = {}
    notes: list[str] = []
    missing = [f for f in REQUIRED if not (root / f).exists()]
    if missing:
        raise DataError(f"--from {src}: {root} lacks {', '.join(missing)}")
    names = [*REQUIRED, MAPPING_FILE, *sorted(p.name for p in root.glob(f"*{FEATURE_SUFFIX}"))]
    if card.dataset.get("class_names_file"):
        names.append(str(card.dataset["class_names_file"]))
    for name in names:
        if (root / name).exists():
            place(root / name, dest / name, link)
            copied[name] = str(root / name)

    places = [root, src, root.parent]
    text = next((p for d in places for p in _text_candidates(d, release) if p.exists()), None)
    if text is None:
        hits = sorted(src.rglob(f"{release}-raw-text.jsonl"))
        text = hits[0] if hits else None
    if text is not None:
        rel = f"raw-data/{release}-raw-text.jsonl"
        place(text, dest / rel, link)
        copied[rel] = str(text)
    else:
        notes.append(f"no {release}-raw-text.jsonl under {src}; node texts will be absent")

    images: dict[str, Any] = {}
    img_dir = next((p for d in places for p in _image_dir_candidates(d, release) if p.is_dir()), None)
    tar = next((p for d in places for p in (d / "raw-data" / f"{release}-images.tar", d / f"{release}-images.tar")
                if p.exists()), None)
    if img_dir is not None:
        index = image_index(img_dir)
        for p in index.values():
            place(p, dest / "images" / p.relative_to(img_dir), link)
        images = {"from": str(img_dir), "count": len(index)}
    elif tar is not None:
        images = {"from": str(tar), "count": _extract_images(tar, dest / "images", notes), "extracted": True}
    else:
        notes.append(f"no images/ folder or {release}-images.tar under {src}; raw images will be absent")

    ds = load_mm_graph_from(card, dest, verify=verify)
    return {"task": card.name, "prepared_at": utc_now(), "source": str(src.resolve()), "linked": link,
            "stats": ds.stats(), "notes": notes + ds.notes, "images": images,
            "features": {k: {"shape": list(v.values.shape), "coverage": float(v.present.float().mean())}
                         for k, v in ds.graph.features.items()},
            "files": {k: {"from": v, "sha256": file_sha256(dest / k)} for k, v in sorted(copied.items())}}
