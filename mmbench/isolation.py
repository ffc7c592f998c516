"""Run one job in a fresh interpreter, so that nothing a previous job scored in this process (test references
in a library cache, a garbage-collected tensor) is reachable from the next job's adapter.

``mmbench eval --seed 0-2`` and the in-process sweep runner use it for every job when they run more than one;
Ray workers run one job each (``max_calls=1``) for the same reason.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import traceback
from collections.abc import Callable
from typing import Any

from mmbench.errors import MMBenchError, failure_summary


class JobProcessError(MMBenchError):
    """A job in its own process raised an unexpected exception; the message is its one-line summary and
    ``child_traceback`` the traceback printed in that process."""

    def __init__(self, summary: str, child_traceback: str, kind: str):
        super().__init__(summary)
        self.child_traceback, self.kind = child_traceback, kind


def _child(conn: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        result = ("ok", fn(*args))
    except MMBenchError as e:
        result = ("mmbench", (type(e).__name__, str(e)))
    except BaseException as e:  # noqa: BLE001  (reported to the parent with its traceback)
        result = ("error", (failure_summary(e), "".join(traceback.format_exception(e)), type(e).__name__))
    conn.send(result)
    conn.close()


def run_in_fresh_process(fn: Callable[..., Any], *args: Any, show_traceback: bool = True) -> Any:
    """``fn(*args)`` in a spawned interpreter (``fn`` and ``args`` must pickle); returns its result. mmbench
    errors come back as the same class where it is one of mmbench's own, any other error as ``JobProcessError``
    (its traceback printed to stderr with ``show_traceback``)."""
    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, args))
    proc.start()
    send.close()
    try:
        kind, payload = receive.recv()
    except EOFError:
        proc.join()
        raise MMBenchError(f"the job's process ended without a result (exit code {proc.exitcode}; killed for "
                           f"memory?)") from None
    finally:
        receive.close()
    proc.join()
    if kind == "ok":
        return payload
    if kind == "mmbench":
        import mmbench.errors as errors

        name, message = payload
        cls = getattr(errors, name, MMBenchError)
        raise (cls if isinstance(cls, type) and issubclass(cls, MMBenchError) else MMBenchError)(message)
    summary, child_tb, kind = payload
    if show_traceback:
        print(child_tb, file=sys.stderr, end="")
    raise JobProcessError(summary, child_tb, kind)
