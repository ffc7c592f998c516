"""Knowledge-graph datasets: the harness-side container and the real-data loaders.

``KGDataset`` holds all three splits; adapters only ever see ``training_view()``, which has no test.
"""

from __future__ import annotations

import importlib.util
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmbench.api import EntityModalities, KGTrainingData, TokenBags
from mmbench.data import register_loader
from mmbench.data.common import dataset_dir, missing_data_message, verify_expected
from mmbench.data.triples import check_id_range, count_lines, read_id_triples, read_labeled_triples, read_name_to_id
from mmbench.errors import DataError
from mmbench.io import sha256_hex
from mmbench.tasks import TaskCard

SPLIT_FILES = {"train": "train.txt", "valid": "valid.txt", "test": "test.txt"}


@dataclass
class KGDataset:
    """All splits of one KG task. train/valid/test: (N, 3) long (head, relation, tail)."""

    task: str
    num_entities: int
    num_relations: int
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    modalities: EntityModalities
    entity_names: tuple[str, ...] | None = None
    relation_names: tuple[str, ...] | None = None
    verified: bool = True
    notes: list[str] = field(default_factory=list)

    def training_view(self) -> KGTrainingData:
        """What the adapter receives: no test triples, no filter that contains them."""
        return KGTrainingData(task=self.task, num_entities=self.num_entities, num_relations=self.num_relations,
                              train=self.train.clone(), valid=self.valid.clone(), modalities=self.modalities,
                              entity_names=self.entity_names, relation_names=self.relation_names)

    def data_hash(self) -> str:
        parts: list[bytes | str] = [f"{self.num_entities},{self.num_relations}"]
        for split in (self.train, self.valid, self.test):
            parts.append(split.contiguous().numpy().tobytes())
        parts.append(hash_modalities(self.modalities))
        return sha256_hex(*parts)

    def describe(self) -> dict[str, Any]:
        return self.modalities.describe()

    def stats(self) -> dict[str, Any]:
        return {"entities": self.num_entities, "relations": self.num_relations, "train": len(self.train),
                "valid": len(self.valid), "test": len(self.test)}


def hash_modalities(m: EntityModalities) -> str:
    parts: list[bytes | str] = [str(m.num_entities)]
    for name in sorted(m.tokens):
        b = m.tokens[name]
        parts += [name, b.ids.numpy().tobytes(), b.offsets.numpy().tobytes(), str(b.vocab_size)]
        if b.embeddings is not None:
            parts.append(b.embeddings.float().contiguous().numpy().tobytes())
    for name in sorted(m.features):
        f = m.features[name]
        parts += [name, f.values.float().contiguous().numpy().tobytes(), f.present.numpy().tobytes()]
    if m.texts is not None:
        parts.append(json.dumps(list(m.texts)))
    if m.image_paths is not None:
        parts.append(json.dumps([list(p) for p in m.image_paths]))
    return sha256_hex(*parts)


def verify_counts(card: TaskCard, ds: KGDataset, verify: bool, where: Path | None = None) -> None:
    """Compare against the card's published statistics (``dataset.expected``); see ``verify_expected``."""
    if not verify_expected(card, ds.stats(), verify, where, ds.notes):
        ds.verified = False


# --------------------------------------------------------------------------- PyKEEN's bundled datasets
def _pykeen_dir(card: TaskCard) -> Path | None:
    spec = importlib.util.find_spec("pykeen")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "datasets" / card.dataset["name"]


def _pykeen_status(card: TaskCard) -> tuple[bool, str]:
    d = _pykeen_dir(card)
    if d is None:
        return False, "pykeen is not installed (pip install pykeen)"
    ok = all((d / f).exists() for f in SPLIT_FILES.values())
    return ok, f"bundled with pykeen ({d})" if ok else f"missing in {d}"


@register_loader("pykeen", _pykeen_status)
def load_pykeen(card: TaskCard, verify: bool = True) -> KGDataset:
    """Structure-only KGs shipped inside the pykeen wheel (Nations, Kinships, UMLS).

    Ids: entities and relations sorted by name over all splits (stable across runs).
    """
    d = _pykeen_dir(card)
    present, detail = _pykeen_status(card)
    if not present or d is None:
        raise DataError(f"task {card.name}: {detail}")
    labeled = {s: read_labeled_triples(d / f) for s, f in SPLIT_FILES.items()}
    ents = sorted({x for rows in labeled.values() for h, _, t in rows for x in (h, t)})
    rels = sorted({r for rows in labeled.values() for _, r, _ in rows})
    e_id = {e: i for i, e in enumerate(ents)}
    r_id = {r: i for i, r in enumerate(rels)}
    splits = {s: torch.tensor([(e_id[h], r_id[r], e_id[t]) for h, r, t in rows], dtype=torch.long).reshape(-1, 3)
              for s, rows in labeled.items()}
    ds = KGDataset(task=card.name, num_entities=len(ents), num_relations=len(rels), **splits,
                   modalities=EntityModalities(num_entities=len(ents)),
                   entity_names=tuple(ents), relation_names=tuple(rels))
    verify_counts(card, ds, verify, d)
    return ds


# --------------------------------------------------------------------------- MyGO / MMRNS layout
def _mygo_status(card: TaskCard) -> tuple[bool, str]:
    d = dataset_dir(card)
    missing = [f for f in SPLIT_FILES.values() if not (d / f).exists()]
    if missing:
        return False, f"not prepared (run: mmbench data prepare {card.name} --from DIR)"
    return True, f"prepared at {d}"


@register_loader("mygo", _mygo_status)
def load_mygo(card: TaskCard, verify: bool = True) -> KGDataset:
    """DB15K / MKG-W / MKG-Y as zjukg/MyGO distributes them (see README 'Tasks').

    Files under the dataset dir: train/valid/test.txt (``h\\tr\\tt`` ids), entities.txt and
    relations.txt (one id per line), entity2id.txt (MKG-W/Y: ``name id``), and the optional
    modality files named in the card's ``dataset.modalities``.
    """
    return load_mygo_from(card, dataset_dir(card), verify)


def load_mygo_from(card: TaskCard, d: Path, verify: bool) -> KGDataset:
    """The MyGO-layout loader for an explicit folder (``mmbench data prepare`` verifies a staging copy)."""
    missing = [f for f in SPLIT_FILES.values() if not (d / f).exists()]
    if missing:
        raise DataError(missing_data_message(card, f"missing {', '.join(missing)} in {d}"))
    splits = {s: read_id_triples(d / f) for s, f in SPLIT_FILES.items()}
    all_triples = torch.cat(list(splits.values()))
    num_entities = _count(d, "entities.txt", "entity2id.txt", int(all_triples[:, [0, 2]].max()) + 1)
    num_relations = _count(d, "relations.txt", "relation2id.txt", int(all_triples[:, 1].max()) + 1)
    for s, f in SPLIT_FILES.items():
        check_id_range(splits[s], num_entities, num_relations, d / f)
    names = None
    if (d / "entity2id.txt").exists():
        name_to_id = read_name_to_id(d / "entity2id.txt")
        names_list = [""] * num_entities
        for n, i in name_to_id.items():
            if i >= num_entities:
                raise DataError(f"{d / 'entity2id.txt'}: id {i} of {n!r} >= {num_entities} entities")
            names_list[i] = n
        names = tuple(names_list)
    ds = KGDataset(task=card.name, num_entities=num_entities, num_relations=num_relations, **splits,
                   modalities=EntityModalities(num_entities=num_entities), entity_names=names)
    verify_counts(card, ds, verify, d)
    ds.modalities = load_mygo_modalities(card, d, num_entities, names, ds.notes)
    return ds


def _count(d: Path, id_list: str, name_map: str, from_ids: int) -> int:
    """Entity/relation count from the data itself (never from the card, which it is checked against):
    ``entities.txt`` lines, else ``entity2id.txt`` entries, else the largest id in the splits + 1."""
    if (d / id_list).exists():
        return count_lines(d / id_list)
    if (d / name_map).exists():
        return len(read_name_to_id(d / name_map))
    return from_ids


def _entity_key_map(card: TaskCard, num_entities: int, names: tuple[str, ...] | None) -> dict[str, int]:
    """How token-file keys map to entity ids: stringified ids (DB15K) or entity2id names (MKG-W/Y)."""
    if card.dataset.get("entity_keys", "ids") == "entity2id":
        if names is None:
            raise DataError(missing_data_message(card, f"entity2id.txt is missing in {dataset_dir(card)}; "
                                                       "the token files are keyed by entity name"))
        return {n: i for i, n in enumerate(names)}
    return {str(i): i for i in range(num_entities)}


def _open_maybe_zipped(path: Path) -> Any:
    """JSON from ``path`` or, if only ``path.zip`` exists, from the file inside that archive."""
    if path.exists():
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    zpath = path.with_name(path.name + ".zip")
    with zipfile.ZipFile(zpath) as z:
        inner = [n for n in z.namelist() if n.endswith(".json") and not n.startswith("__MACOSX")]
        if not inner:
            raise DataError(f"{zpath}: no .json file inside the archive")
        with z.open(inner[0]) as f:
            return json.load(f)


def read_token_json(path: Path, key_map: dict[str, int], num_entities: int, vocab_size: int,
                    notes: list[str]) -> list[list[int]]:
    """A MyGO token file: {entity key: [token id, ...]} -> per-entity lists (empty where absent)."""
    try:
        raw = _open_maybe_zipped(path)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object mapping entity keys to token-id lists")
    lists: list[list[int]] = [[] for _ in range(num_entities)]
    unknown = 0
    for key, toks in raw.items():
        if key not in key_map:
            unknown += 1
            continue
        if not isinstance(toks, list) or not all(isinstance(t, int) for t in toks):
            raise DataError(f"{path}: entry {key!r} must be a list of integer token ids")
        bad = [t for t in toks if t < 0 or t >= vocab_size]
        if bad:
            raise DataError(f"{path}: entry {key!r} has token id {bad[0]} outside the vocabulary "
                            f"[0, {vocab_size}); check the card's vocab_size")
        lists[key_map[key]] = toks
    if raw and unknown == len(raw):
        raise DataError(f"{path}: none of its {len(raw)} keys names an entity (e.g. {next(iter(raw))!r}); "
                        f"check the card's dataset.entity_keys")
    if unknown:
        notes.append(f"{path.name}: {unknown} keys name no entity and were skipped")
    return lists


def load_codebook(path: Path) -> torch.Tensor:
    """A codebook saved with torch.save: a tensor, a Parameter, or a state dict holding one matrix."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (any unpickling failure is a data problem)
        raise DataError(f"{path}: cannot read the codebook ({e})") from None
    if isinstance(obj, dict):
        mats = [v for v in obj.values() if isinstance(v, torch.Tensor) and v.dim() == 2]
        if len(mats) != 1:
            raise DataError(f"{path}: expected one 2-D tensor in the saved dict, found {len(mats)}")
        obj = mats[0]
    if not isinstance(obj, torch.Tensor) or obj.dim() != 2:
        raise DataError(f"{path}: expected a 2-D codebook tensor, got {type(obj).__name__}")
    return obj.detach().float().contiguous()


def load_mygo_modalities(card: TaskCard, root: Path, num_entities: int, names: tuple[str, ...] | None,
                         notes: list[str]) -> EntityModalities:
    spec = card.dataset.get("modalities") or {}
    tokens: dict[str, TokenBags] = {}
    key_map = None
    for modality in ("text", "image"):
        entry = spec.get(f"{modality}_tokens")
        if not entry:
            continue
        path = root / entry["file"]
        if not path.exists() and not path.with_name(path.name + ".zip").exists():
            msg = f"{modality} token file {entry['file']} is missing in {root}"
            if entry.get("required", True):
                raise DataError(missing_data_message(card, msg))
            notes.append(msg + "; the modality is absent")
            continue
        key_map = key_map or _entity_key_map(card, num_entities, names)
        lists = read_token_json(path, key_map, num_entities, int(entry["vocab_size"]), notes)
        codebook = None
        if entry.get("codebook"):
            cb_path = root / entry["codebook"]
            if not cb_path.exists():
                raise DataError(missing_data_message(card, f"codebook {entry['codebook']} is missing in {root}"))
            codebook = load_codebook(cb_path)
            if codebook.shape[0] < int(entry["vocab_size"]):
                raise DataError(f"{cb_path}: {codebook.shape[0]} codes, but the card declares "
                                f"vocab_size {entry['vocab_size']}")
        tokens[modality] = TokenBags.from_lists(lists, int(entry["vocab_size"]), embeddings=codebook,
                                                source=f"{entry['file']} ({entry.get('tokenizer', '')})")
    texts = None
    if spec.get("descriptions"):
        path = root / spec["descriptions"]["file"]
        if path.exists():
            key_map = key_map or _entity_key_map(card, num_entities, names)
            texts = tuple(_read_descriptions(path, key_map, num_entities))
        else:
            notes.append(f"descriptions file {path.name} not found; texts absent")
    image_paths = None
    if spec.get("images"):
        img_dir = root / spec["images"]["dir"]
        if img_dir.is_dir():
            key_map = key_map or _entity_key_map(card, num_entities, names)
            image_paths = tuple(_image_paths(img_dir, key_map, num_entities))
        else:
            notes.append(f"image folder {img_dir.name}/ not found; raw images absent")
    return EntityModalities(num_entities=num_entities, texts=texts, tokens=tokens, image_paths=image_paths)


def _read_descriptions(path: Path, key_map: dict[str, int], n: int) -> list[str | None]:
    """``key\\tdescription`` per line."""
    out: list[str | None] = [None] * n
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            if "\t" not in line:
                raise DataError(f"{path}:{lineno}: expected 'entity key<TAB>description'")
            key, text = line.rstrip("\n").split("\t", 1)
            if key in key_map:
                out[key_map[key]] = text
    return out


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"}


def _image_paths(img_dir: Path, key_map: dict[str, int], n: int) -> list[tuple[str, ...]]:
    """``images/<entity key>/*.jpg`` -> per-entity sorted file lists."""
    out: list[tuple[str, ...]] = [()] * n
    # URI keys (MKG-W: http://www.wikidata.org/entity/Q42) name their folder by the last path part
    by_folder = {k.rstrip("/").rsplit("/", 1)[-1]: i for k, i in key_map.items()}
    for sub in sorted(p for p in img_dir.iterdir() if p.is_dir()):
        if sub.name in by_folder:
            files = sorted(str(p) for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            out[by_folder[sub.name]] = tuple(files)
    return out
