"""Predictions files: what a model answered, one JSON line per step or grounding sample.

Format (JSONL, UTF-8, one object per line)::

    {"episode_id": "8193", "step": 0, "response": "<tool_call>{...}</tool_call>"}
    {"episode_id": "8193", "step": 1, "action": {"type": "click", "point": [540, 2273]}}
    {"episode_id": "8193", "step": 1, "level": "low", "response": "..."}
    {"sample_id": "mobile_17", "action": {"type": "click", "point": [211.5, 87.0]}}

- ``episode_id`` + ``step`` (0-based step index) key a step of an episode store; ``sample_id`` keys a
  sample of a grounding store (ScreenSpot). Ids are compared as strings.
- ``response`` is the model's raw text. It is parsed with :func:`guiagent.actions.parse_action` in the
  format given on the command line (``--format``), against the model geometry of that step's
  screenshot (``smart_resize`` of the screenshot size with ``--factor/--min-pixels/--max-pixels``),
  so coordinates come back in device pixels.
- ``action`` is an already-canonical :class:`guiagent.types.Action` as JSON (``Action.to_json()``),
  coordinates in device pixels of the screenshot.
- ``level`` (optional, AndroidControl only): ``"high"`` (goal only) or ``"low"`` (goal + step
  instruction). Lines without one count as ``"high"``.
- Exactly one of ``response`` / ``action`` per line. A key seen twice is an error. Unknown keys are
  ignored so that runners can keep extra fields (timings, log-probs) in the same file.

A step or sample with no line is *missing*: it is scored as wrong and counted in the report. A
``response`` that does not parse is a *parse failure*: also wrong, also counted. A line whose key names
no step or sample of the store (another split, a typo in an id, a level the benchmark does not score)
is *unmatched*: it cannot be scored, and the report counts it and names its line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guiagent.actions import ActionSpaceConfig
from guiagent.errors import DataError
from guiagent.types import Action

LEVELS = ("high", "low")
StepKey = tuple[str, int, str]  # (episode_id, step, level)


@dataclass(frozen=True)
class Prediction:
    """One line of a predictions file.

    Attributes:
        line: 1-based line number in the file (for error messages).
        response: The model's raw text, or None when ``action`` was given.
        action: The canonical action given directly, or None when ``response`` was given.
    """

    line: int
    response: str | None = None
    action: Action | None = None


@dataclass(frozen=True)
class Predictions:
    """A loaded predictions file.

    Attributes:
        path: The file.
        steps: ``(episode_id, step, level)`` → prediction, for episode benchmarks.
        samples: ``sample_id`` → prediction, for grounding benchmarks.
        skipped: ``(line number, what is wrong)`` of each line skipped as invalid (only with ``skip_invalid``).
    """

    path: str
    steps: Mapping[StepKey, Prediction]
    samples: Mapping[str, Prediction]
    skipped: tuple[tuple[int, str], ...] = ()

    @property
    def invalid_lines(self) -> tuple[int, ...]:
        """Line numbers of the lines skipped as invalid."""
        return tuple(line for line, _ in self.skipped)

    def step(self, episode_id: str, step: int, level: str = "high") -> Prediction | None:
        return self.steps.get((str(episode_id), int(step), level))

    def unmatched(self, steps: Collection[StepKey] = (), samples: Collection[str] = ()) -> list[dict[str, Any]]:
        """The lines whose key is not among the keys that were scored, in file order.

        Args:
            steps: The ``(episode_id, step, level)`` keys an evaluation looked up and found.
            samples: The ``sample_id`` keys it looked up and found.

        Returns:
            ``{"line", "episode_id", "step", "level"}`` or ``{"line", "sample_id"}`` per unmatched line.
        """
        rows = [{"line": p.line, "episode_id": k[0], "step": k[1], "level": k[2]}
                for k, p in self.steps.items() if k not in steps]
        rows += [{"line": p.line, "sample_id": k} for k, p in self.samples.items() if k not in samples]
        return sorted(rows, key=lambda row: row["line"])

    def levels(self) -> list[str]:
        """Instruction levels present in the file, in ``LEVELS`` order."""
        present = {key[2] for key in self.steps}
        return [level for level in LEVELS if level in present]


def _parse_line(data: Any) -> tuple[StepKey | str, Prediction]:
    """Validate one decoded line; raises ValueError naming the problem."""
    if not isinstance(data, dict):
        raise ValueError(f"a prediction is a JSON object, got {type(data).__name__}")
    has_response, has_action = "response" in data, "action" in data
    if has_response == has_action:
        raise ValueError("a prediction needs exactly one of 'response' and 'action'")
    if has_response and not isinstance(data["response"], str):
        raise ValueError(f"'response' must be a string, got {type(data['response']).__name__}")
    action = None
    if has_action:
        try:
            action = Action.from_json(data["action"])
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"'action' is not a canonical action: {exc}") from None
    prediction = Prediction(line=0, response=data.get("response"), action=action)
    if "sample_id" in data:
        return str(data["sample_id"]), prediction
    if "episode_id" not in data or "step" not in data:
        raise ValueError("a prediction needs 'sample_id', or 'episode_id' and 'step'")
    step = data["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"'step' must be a non-negative integer, got {step!r}")
    level = data.get("level", "high")
    if level not in LEVELS:
        raise ValueError(f"'level' must be one of {LEVELS}, got {level!r}")
    return (str(data["episode_id"]), step, level), prediction


def load_predictions(path: str | os.PathLike, skip_invalid: bool = False) -> Predictions:
    """Read a predictions file (see the module docstring for the format).

    Args:
        path: The JSONL file.
        skip_invalid: Skip lines that are not valid predictions (they are listed in ``skipped`` with the
            reason; the steps they were for then count as missing) instead of raising.

    Raises:
        DataError: the file is missing, or a line is invalid or repeats a key (``record`` = line number).
    """
    from guiagent.data.store import iter_json_lines  # deferred: keeps ``guiagent --help`` light

    path = Path(path)
    steps: dict[StepKey, Prediction] = {}
    samples: dict[str, Prediction] = {}
    skipped: list[tuple[int, str]] = []
    skip_json_error = (lambda error: skipped.append((error.record, error.message))) if skip_invalid else None
    for lineno, data in iter_json_lines(path, on_error=skip_json_error):
        try:
            key, prediction = _parse_line(data)
            target: dict = samples if isinstance(key, str) else steps
            if key in target:
                raise ValueError(f"duplicate prediction for {key!r} (first on line {target[key].line})")
        except ValueError as exc:
            if skip_invalid:
                skipped.append((lineno, str(exc)))
                continue
            raise DataError(str(exc), file=str(path), record=lineno) from None
        target[key] = Prediction(line=lineno, response=prediction.response, action=prediction.action)
    return Predictions(str(path), steps, samples, tuple(sorted(skipped)))


def write_predictions(path: str | os.PathLike, records: Iterable[Mapping[str, Any]]) -> int:
    """Write prediction records (dicts in the format above) as JSONL; returns the number written."""
    count = 0
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


@dataclass(frozen=True)
class Resolved:
    """A prediction turned into a canonical action, or why it could not be.

    Attributes:
        action: The predicted action in device pixels, or None.
        status: ``"ok"``, ``"missing"`` (no line for this step) or ``"parse_failure"``.
        error: The parse failure's message, when there is one.
    """

    action: Action | None
    status: str
    error: str | None = None


def resolve(prediction: Prediction | None, width: int, height: int, space: ActionSpaceConfig) -> Resolved:
    """Canonical action of one prediction on a ``width`` × ``height`` screenshot.

    ``response`` text is parsed with ``guiagent.actions.parse_action`` in ``space.format`` against the
    model geometry of this screenshot, so the action comes back in device pixels.
    """
    if prediction is None:
        return Resolved(None, "missing")
    if prediction.action is not None:
        return Resolved(prediction.action, "ok")
    from guiagent.actions import parse_action  # deferred: only text predictions need it

    parsed = parse_action(prediction.response, space.format, space.geometry(width, height))
    if isinstance(parsed, Action):
        return Resolved(parsed, "ok")
    return Resolved(None, "parse_failure", str(getattr(parsed, "reason", parsed)))


def ground_truth_error(
    what: str, exc: Exception, episode_id: str, step: int, root: str | os.PathLike | None = None
) -> DataError:
    """The error for a store step whose ground truth (``what``) is missing or malformed.

    Args:
        what: The ground truth the benchmark needs, e.g. ``"info['aitw']"``.
        exc: What went wrong reading it.
        episode_id: The step's episode.
        step: The step's index.
        root: The store directory, when known (the file named is its episodes file).
    """
    from guiagent.data.store import EPISODES  # deferred: keeps ``guiagent --help`` light

    return DataError(
        f"step has no valid {what} ({exc!r})",
        file=os.path.join(str(root), EPISODES) if root is not None else EPISODES,
        record=f"episode {episode_id} step {step}",
    )


def read_benchmark_manifest(
    root: str | os.PathLike, benchmark: str, datasets: tuple[str, ...]
) -> dict[str, Any]:
    """The manifest of the store at ``root``, which must hold one of ``datasets``.

    Args:
        root: The store directory.
        benchmark: The evaluation's name, for the message (``"aitw"``).
        datasets: The manifest ``dataset`` values the benchmark's protocol scores.

    Raises:
        DataError: ``root`` is not a store, or holds another dataset (scored anyway, it would yield a report
            over zero steps, or over ground truth read the wrong way).
    """
    from guiagent.data.store import MANIFEST, read_manifest  # deferred: keeps ``guiagent --help`` light

    manifest = read_manifest(root)
    if manifest.get("dataset") not in datasets:
        raise DataError(
            f"a store of {manifest.get('dataset')!r} data; the {benchmark} evaluation reads "
            f"{' or '.join(datasets)} stores",
            file=os.path.join(str(root), MANIFEST),
        )
    return manifest


def iter_step_predictions(
    root: str | os.PathLike,
    predictions: Predictions,
    space: ActionSpaceConfig,
    level: str = "high",
    counts: dict[str, int] | None = None,
    matched: set[StepKey] | None = None,
):
    """Walk every step of an episode store with its resolved prediction, streaming.

    Args:
        root: The store directory.
        predictions: The loaded predictions file.
        space: Format and geometry used to parse ``response`` text.
        level: Instruction level whose predictions to use (AndroidControl); ``"high"`` elsewhere.
        counts: If given, incremented per resolution status (``ok`` / ``missing`` / ``parse_failure``).
        matched: If given, the key of each step that had a prediction is added (see
            :meth:`Predictions.unmatched`).

    Yields:
        ``(trajectory, step, resolved)`` for each step, in store order.
    """
    from guiagent.data.store import iter_episodes  # deferred: keeps ``guiagent --help`` light

    for trajectory in iter_episodes(root):
        for step in trajectory.steps:
            obs = step.observation
            prediction = predictions.step(trajectory.episode_id, step.index, level)
            if prediction is not None and matched is not None:
                matched.add((str(trajectory.episode_id), int(step.index), level))
            resolved = resolve(prediction, obs.width, obs.height, space)
            if counts is not None:
                counts[resolved.status] = counts.get(resolved.status, 0) + 1
            yield trajectory, step, resolved
