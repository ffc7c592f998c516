"""``mmbench data prepare TASK --from DIR``: gather a release's files into ``$MMBENCH_DATA`` and verify."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmbench.data import register_preparer
from mmbench.data.common import dataset_dir
from mmbench.data.kg import SPLIT_FILES, load_mygo_from
from mmbench.data.triples import read_id_triples
from mmbench.errors import DataError
from mmbench.io import atomic_write_json, atomic_write_text, file_sha256, utc_now
from mmbench.tasks import TaskCard

_ORIGINS: dict[str, str] = {}
"""Staged file -> the user's file it was copied or linked from (``place``), for error messages."""


def place(src: Path, dest: Path, link: bool) -> None:
    """Copy (or symlink, ``link``) ``src`` to ``dest`` in a staging folder, remembering where it came from."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() or dest.is_symlink():
        if dest.resolve() == src.resolve():
            return
        dest.unlink()
    if link:
        os.symlink(src.resolve(), dest)
    else:
        shutil.copy2(src, dest)
    _ORIGINS[str(dest)] = str(src)


def _name_sources(message: str, stage: Path, src: Path | None) -> str:
    """Replace staged paths in ``message`` by the user's files they came from (longest paths first); a path
    under the staging folder with no single origin (a converted file) is named relative to ``--from``."""
    for staged_path in sorted((k for k in _ORIGINS if k.startswith(str(stage) + os.sep)), key=len, reverse=True):
        message = message.replace(staged_path, _ORIGINS[staged_path])
    if str(stage) in message:
        message = message.replace(str(stage), f"{src} (converted copy)" if src is not None else str(stage))
    return message


def staged(dest: Path, build: Callable[[Path], dict[str, Any]], src: Path | None = None,
           verify: bool = True) -> dict[str, Any]:
    """Run ``build(stage_dir) -> manifest`` in a staging folder beside ``dest``; on success move its files
    into ``dest`` and write ``MANIFEST.json`` (with ``verified``); on failure drop the staging folder, leave
    ``dest`` as it was, and name the user's files (under ``src``) in the error instead of the staging copies."""
    stage = dest.parent / f".{dest.name}.staging-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    try:
        manifest = build(stage)
    except DataError as e:
        shutil.rmtree(stage, ignore_errors=True)  # the staging copy only; the prepared data stays as it was
        raise DataError(_name_sources(str(e), stage, src)) from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    finally:
        for key in [k for k in _ORIGINS if k.startswith(str(stage) + os.sep)]:
            del _ORIGINS[key]
    manifest["verified"] = verify
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(p for p in stage.rglob("*") if not p.is_dir()):
        target = dest / f.relative_to(stage)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(f, target)
    shutil.rmtree(stage, ignore_errors=True)
    atomic_write_json(dest / "MANIFEST.json", manifest)
    return manifest


@register_preparer("mygo")
def prepare(card: TaskCard, src: Path, link: bool = False, verify: bool = True) -> dict[str, Any]:
    """Copy (or symlink) the files the card names from ``src`` and verify them; returns the manifest."""
    src = Path(src).expanduser()
    if not src.is_dir():
        raise DataError(f"--from {src}: not a directory")
    return staged(dataset_dir(card), lambda stage: _stage_and_verify(card, src, stage, link, verify), src, verify)


def _stage_and_verify(card: TaskCard, src: Path, dest: Path, link: bool, verify: bool) -> dict[str, Any]:
    """Gather the release into ``dest`` (a staging folder) and load it with verification."""
    release = card.dataset.get("release_name", card.name)
    copied: dict[str, str] = {}

    split_dir = _find_dir(src, release, "train.txt")
    if split_dir is not None:
        for name in list(SPLIT_FILES.values()) + ["entities.txt", "relations.txt", "entity2id.txt"]:
            if (split_dir / name).exists():
                place(split_dir / name, dest / name, link)
                copied[name] = str(split_dir / name)
    else:
        openke = _find_dir(src, release, "train2id.txt")
        if openke is None:
            raise DataError(f"--from {src}: found neither train.txt (MyGO layout, e.g. data/{release}/) nor "
                            f"train2id.txt (OpenKE layout, e.g. benchmarks/{release}/)")
        for split, name in SPLIT_FILES.items():  # OpenKE: count header, columns h t r
            triples = read_id_triples(openke / f"{split}2id.txt", order="htr", header=True)
            atomic_write_text(dest / name, "".join(f"{h}\t{r}\t{t}\n" for h, r, t in triples.tolist()))
            copied[name] = f"{openke / f'{split}2id.txt'} (converted from OpenKE h t r)"
        for name in ("entity2id.txt", "relation2id.txt"):
            if (openke / name).exists():
                place(openke / name, dest / name, link)
                copied[name] = str(openke / name)

    for entry in _modality_files(card):
        found = _find_file(src, entry)
        if found is not None:
            target = dest / entry if found.suffix != ".zip" or entry.endswith(".zip") else dest / (entry + ".zip")
            place(found, target, link)
            copied[str(target.relative_to(dest))] = str(found)

    ds = load_mygo_from(card, dest, verify=verify)
    return {"task": card.name, "prepared_at": utc_now(), "source": str(src.resolve()), "linked": link,
            "stats": ds.stats(), "modalities": ds.modalities.describe(), "notes": ds.notes,
            "files": {k: {"from": v, "sha256": file_sha256(dest / k)} for k, v in sorted(copied.items())}}


def _modality_files(card: TaskCard) -> list[str]:
    spec = card.dataset.get("modalities") or {}
    files = []
    for entry in spec.values():
        for key in ("file", "codebook"):
            if isinstance(entry, dict) and entry.get(key):
                files.append(entry[key])
    return files


def _find_dir(src: Path, release: str, marker: str) -> Path | None:
    for cand in (src, src / release, src / "data" / release, src / "benchmarks" / release):
        if (cand / marker).exists():
            return cand
    hits = sorted(p.parent for p in src.rglob(marker) if release.lower() in str(p.parent).lower())
    return hits[0] if hits else None


def _find_file(src: Path, rel: str) -> Path | None:
    name = Path(rel).name
    for cand in (src / rel, src / name, src / "tokens" / name):
        for c in (cand, cand.with_name(cand.name + ".zip")):
            if c.exists():
                return c
    hits = sorted(src.rglob(name)) or sorted(src.rglob(name + ".zip"))
    return hits[0] if hits else None
