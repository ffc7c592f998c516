"""Progress bars with an ETA on stderr; ``quiet=True`` silences them (and the summary lines)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


class Progress:
    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    def bar(self, total: int | None, desc: str, unit: str = "it", leave: bool = False) -> Any:
        return tqdm(total=total, desc=desc, unit=unit, disable=self.quiet, leave=leave, file=sys.stderr,
                    dynamic_ncols=True, mininterval=0.5)

    def log(self, message: str) -> None:
        if not self.quiet:
            tqdm.write(message, file=sys.stderr)
