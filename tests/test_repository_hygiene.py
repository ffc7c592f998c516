"""The repository is self-contained: no comment or doc points to a file a clone does not have."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

from mmbench.paths import PROJECT_ROOT

OUTSIDE = re.compile(r"shared/reference|/work/|\b(?:graph4mm|mygo|vwlmm|environment)\.md\b")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".sh", ".txt", ".cfg"}


def _tracked_text_files():
    out = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout
    for rel in out.splitlines():
        path = PROJECT_ROOT / rel
        if rel.startswith(("results/", "leaderboard/")) or not path.is_file():
            continue
        if path.suffix in TEXT_SUFFIXES or path.name in ("Makefile",):
            yield rel, path


def test_no_reference_to_files_outside_the_repository():
    hits = [f"{rel}:{n}: {line.strip()[:100]}" for rel, path in _tracked_text_files()
            for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if OUTSIDE.search(line) and rel != "tests/test_repository_hygiene.py"]
    assert not hits, "\n".join(hits)


def test_docs_the_code_points_to_exist():
    cited = set()
    for _, path in _tracked_text_files():
        cited |= set(re.findall(r"docs/[\w./-]+\.md", path.read_text(encoding="utf-8", errors="replace")))
    assert cited, "the code should point to its docs"
    missing = sorted(c for c in cited if not (PROJECT_ROOT / c).is_file())
    assert not missing, missing


def test_the_package_import_graph_has_no_circle():
    """Module-level imports between mmbench modules form no cycle (function-level imports are allowed)."""
    root = Path(__file__).resolve().parents[1]
    graph: dict[str, set[str]] = {}
    for p in (root / "mmbench").rglob("*.py"):
        name = ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        deps: set[str] = set()
        for node in ast.parse(p.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mmbench"):
                deps |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("mmbench")}
        graph[name] = deps
    graph = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(u: str, stack: list[str]) -> None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                cycles.append(stack[stack.index(v):] + [v])
            elif v not in state:
                visit(v, stack)
        stack.pop()
        state[u] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    assert not cycles, [" -> ".join(c) for c in cycles]
    assert len(graph) > 50
