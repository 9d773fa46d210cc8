"""Named, timed phases: the table of contents of a training run (``rollout → reward → advantage → update →
sync_weights → evaluate → checkpoint``) and of the demo."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any


class PhaseTimer:
    """Times named phases, prints when each starts and ends, and records failures with their error.

    Args:
        prefix: Printed before every line (``"[demo]"``, ``"[train]"``); None prints nothing.

    Attributes:
        phases: One record per finished phase: ``name``, ``what``, ``seconds``, ``status`` (``"ok"`` or
            ``"failed: Error: message"``).
    """

    def __init__(self, prefix: str | None = "[train]") -> None:
        self.prefix = prefix
        self.phases: list[dict[str, Any]] = []

    def _say(self, text: str) -> None:
        if self.prefix is not None:
            print(f"{self.prefix} {text}", flush=True)

    @contextlib.contextmanager
    def phase(self, name: str, what: str = "") -> Iterator[None]:
        """Time the block as phase ``name``; an exception is recorded and re-raised."""
        self._say(f"{name}: {what} ..." if what else f"{name} ...")
        start = time.perf_counter()
        record: dict[str, Any] = {"name": name, "what": what, "status": "ok"}
        try:
            yield
        except BaseException as exc:
            record["status"] = f"failed: {type(exc).__name__}: {exc}"
            raise
        finally:
            record["seconds"] = round(time.perf_counter() - start, 2)
            self.phases.append(record)
            self._say(f"{name}: {record['status']} in {record['seconds']} s")

    @property
    def total_seconds(self) -> float:
        return round(sum(p["seconds"] for p in self.phases), 2)
