"""Atomic file writes and stable hashing."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process umask, read without changing it where Linux exposes it (``os.umask`` sets it briefly)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``; the file gets the
    permissions a plain ``open`` would give it (0666 minus the umask), so shared results stay readable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_jsonl_gz(path: Path, rows: Iterable[dict]) -> None:
    """Per-sample logs: one JSON object per line, gzip-compressed (mtime 0 for stable bytes)."""
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    atomic_write_bytes(path, gzip.compress(text.encode("utf-8"), mtime=0))


def utc_now() -> str:
    """The current UTC time as ``YYYY-MM-DDTHH:MM:SSZ`` (records, manifests, logs)."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def sha256_hex(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8") if isinstance(p, str) else p)
    return h.hexdigest()


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class RunLock:
    """An exclusive lock on one run key: a lock file holding ``pid host time``, created atomically with its content.

    ``acquire`` waits while another live process holds it (calling ``on_wait(holder)`` once), and takes over a
    stale lock (its pid is gone on this host). Used as a context manager; the file is removed on release."""

    def __init__(self, path: Path, poll_seconds: float = 2.0):
        self.path, self.poll, self.held = Path(path), poll_seconds, False

    def holder(self) -> dict[str, Any] | None:
        try:
            pid, host, started = self.path.read_text(encoding="utf-8").split()[:3]
            return {"pid": int(pid), "host": host, "since": started}
        except (OSError, ValueError):
            return None

    def _stale(self, holder: dict[str, Any] | None) -> bool:
        import socket

        if holder is None or holder["host"] != socket.gethostname():
            return False  # unreadable (being written) or another machine's: wait
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def acquire(self, on_wait: Any = None) -> None:
        import socket
        import time
        from datetime import datetime, timezone

        self.path.parent.mkdir(parents=True, exist_ok=True)
        told = False
        while True:
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            if self._create(f"{os.getpid()} {socket.gethostname()} {stamp}\n"):
                self.held = True
                return
            holder = self.holder()
            if self._stale(holder):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                continue
            if not told and on_wait is not None:
                on_wait(holder)
                told = True
            time.sleep(self.poll)

    def _create(self, content: str) -> bool:
        """Create the lock file with ``content`` already in it (False: it exists). The content is written to a
        private file first and hard-linked into place, so a waiting process never reads a lock without its pid;
        where the file system has no hard links, an O_EXCL create followed by the write."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(content, encoding="utf-8")
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError:   # no hard links here
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(content)
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
