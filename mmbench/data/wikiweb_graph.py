"""Loading a prepared WikiWeb2M sample (manifest checks) and building its page graphs as one ``MultimodalGraph``
with the per-target assembler."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import torch

from mmbench.data import register_loader
from mmbench.data.common import dataset_dir, missing_data_message
from mmbench.data.graph import GraphTaskData, MultimodalGraph
from mmbench.data.wikiweb_assembly import Assembler, _PageNodes
from mmbench.data.wikiweb_pages import CARD_SPLITS, FORMAT, II, PAGE_FILES, TI, TT, Page, _norm, params_of
from mmbench.errors import DataError
from mmbench.io import file_sha256
from mmbench.tasks import TaskCard


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
