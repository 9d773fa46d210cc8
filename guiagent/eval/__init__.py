"""Offline evaluation that reproduces each benchmark's reference protocol and says which one it used.

Modules (each documents its reference and any deliberate difference):

- :mod:`guiagent.eval.aitw` — AITW ``check_actions_match`` (float32) and SeeClick's split metrics.
- :mod:`guiagent.eval.screenspot` — ScreenSpot v1 / v2 / Pro point-in-box accuracy.
- :mod:`guiagent.eval.androidcontrol` — AndroidControl step metrics and UI-S1's SOP, with a runner.
- :mod:`guiagent.eval.odyssey` — GUI-Odyssey action matching.
- :mod:`guiagent.eval.predictions` — the predictions file format (JSONL) every benchmark reads.
- :mod:`guiagent.eval.report` — ``report.json`` / ``report.md``.
- :mod:`guiagent.eval.model` — predictions from a :mod:`guiagent.policy` backend (``--model``).

``guiagent eval BENCHMARK DATA --predictions FILE --out DIR`` runs :func:`evaluate` and writes both reports.
"""

from __future__ import annotations

from typing import Any

BENCHMARKS = ("aitw", "androidcontrol", "screenspot", "odyssey")


def protocol_module(benchmark: str):
    """The module of ``benchmark``'s protocol: its ``evaluate`` and the store ``DATASETS`` it scores."""
    from guiagent.eval import aitw, androidcontrol, odyssey, screenspot

    modules = {"aitw": aitw, "androidcontrol": androidcontrol, "screenspot": screenspot, "odyssey": odyssey}
    if benchmark not in modules:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose one of {BENCHMARKS}")
    return modules[benchmark]


def evaluate(benchmark: str, root, predictions, space, **options: Any) -> dict[str, Any]:
    """Score ``predictions`` on the store at ``root`` with ``benchmark``'s protocol; returns the report dict.

    Args:
        benchmark: One of ``BENCHMARKS``.
        root: The converted store directory.
        predictions: A loaded :class:`guiagent.eval.predictions.Predictions`.
        space: :class:`guiagent.actions.ActionSpaceConfig` for parsing ``response`` text.
        **options: Benchmark options (AITW: ``strict_text``).

    Raises:
        DataError: the store is not one of ``benchmark``'s, its ground truth is malformed, or it holds nothing
            to score (a report over zero steps would read as a result).
    """
    from guiagent.errors import DataError

    report = protocol_module(benchmark).evaluate(root, predictions, space, **options)
    if report["count"] == 0:
        raise DataError(f"the store holds no {report['unit']} to score", file=str(root))
    return report
