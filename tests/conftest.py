"""Shared test fixtures: environment isolation, fixture-data copies, task-card copies."""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from mmbench.paths import PROJECT_ROOT

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TASKS_DIR = PROJECT_ROOT / "tasks"

# Counts of the tiny fixtures written by tests/fixtures/make_kg_fixtures.py
DB15K_FIXTURE_STATS = {"entities": 40, "relations": 6, "train": 150, "valid": 20, "test": 20}
MKGW_FIXTURE_STATS = {"entities": 36, "relations": 5, "train": 120, "valid": 15, "test": 15}


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """The models in these tests are tiny; on small CPU quotas extra intra-op threads only add overhead."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class Env:
    root: Path
    data: Path
    results: Path
    leaderboard: Path
    cache: Path
    tasks: Path


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """Point every mmbench location at a fresh tmp dir (no test writes elsewhere)."""
    e = Env(root=tmp_path, data=tmp_path / "data", results=tmp_path / "results",
            leaderboard=tmp_path / "leaderboard", cache=tmp_path / "cache", tasks=tmp_path / "extra-tasks")
    monkeypatch.setenv("MMBENCH_DATA", str(e.data))
    monkeypatch.setenv("MMBENCH_RESULTS", str(e.results))
    monkeypatch.setenv("MMBENCH_LEADERBOARD", str(e.leaderboard))
    monkeypatch.setenv("MMBENCH_CACHE", str(e.cache))
    monkeypatch.setenv("PYSTOW_HOME", str(tmp_path / "pystow"))
    monkeypatch.delenv("MMBENCH_TASK_PATH", raising=False)
    return e


def unpadded(text: str) -> str:
    """A generated markdown page with its tables unpadded (``tabulate`` pads cells to the column width), so
    expectations can be written by hand: each table line becomes ``| a | b |`` and each rule ``|---|---|``."""
    out = []
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rule = all(c and set(c) <= set("-:") for c in cells)
            line = "|" + "|".join("---" for _ in cells) + "|" if rule else "| " + " | ".join(cells) + " |"
        out.append(line)
    return "\n".join(out) + "\n"


def copy_fixture(name: str, dest: Path) -> Path:
    """Copy tests/fixtures/<name> to ``dest`` (which must not exist yet); returns ``dest``."""
    shutil.copytree(FIXTURES / name, dest)
    return dest


@pytest.fixture
def install_fixture(env: Env):
    """``install_fixture("db15k")`` copies the fixture to $MMBENCH_DATA/db15k (or ``dir``) as if prepared."""

    def install(name: str, dir: str | None = None) -> Path:
        return copy_fixture(name, env.data / (dir or name))

    return install


def card_raw(name: str) -> dict[str, Any]:
    """The bundled card tasks/<name>.yaml as a fresh dict."""
    return copy.deepcopy(yaml.safe_load((TASKS_DIR / f"{name}.yaml").read_text(encoding="utf-8")))


def write_card(directory: Path, raw: dict[str, Any], stem: str | None = None) -> Path:
    """Write a card mapping to ``directory/<stem or raw['name']>.yaml``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem or raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def fixture_db15k_card(tmp_path: Path) -> Path:
    """A copy of tasks/db15k.yaml whose published counts are the fixture's, loadable by path."""
    raw = card_raw("db15k")
    raw["dataset"]["expected"] = dict(DB15K_FIXTURE_STATS)
    return write_card(tmp_path / "cards", raw)
