"""OSWorld task files → :class:`~guiagent.types.Task`.

An OSWorld task (``evaluation_examples/examples/<domain>/<id>.json``) holds ``id``, ``instruction``,
``config`` (setup steps ``{"type", "parameters"}`` run before the episode), ``evaluator`` (``func``,
``result``/``expected`` getters, ``options``, ``conj``, ``postconfig``) and metadata (``snapshot``,
``source``, ``related_apps``). The whole record rides in ``Task.params`` so that the worker that owns the VM
can set the task up and judge it; the domain (the file's folder) is the task's template, as OSWorld reports
success per domain.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from guiagent.errors import DataError
from guiagent.types import Task

# OSWorld's run.py default step budget.
DEFAULT_MAX_STEPS = 15


def load_osworld_tasks(path: str | Path, max_steps: int = DEFAULT_MAX_STEPS) -> list[Task]:
    """Load OSWorld tasks from a task file, an index file, or a directory of task files.

    Args:
        path: A task JSON file; an index file (``test_all.json``: ``{domain: [id, ...]}``, the tasks read from
            ``examples/<domain>/<id>.json`` beside it); or a directory, searched recursively for task files
            (index files inside it are skipped: the tasks they list are in the tree).
        max_steps: Step budget of every task.

    Raises:
        DataError: a file is not JSON or a task lacks a field or has one of the wrong shape (names the file
            and the field).
    """
    path = Path(path)
    if path.is_dir():
        tasks = []
        for file in sorted(path.rglob("*.json")):
            record = _read_json(file)
            if not _is_index(record):
                tasks.append(task_from_record(record, file, max_steps))
        if not tasks:
            raise DataError("no OSWorld task files found", file=str(path))
        return tasks
    record = _read_json(path)
    if _is_index(record):
        return [task_from_record(_read_json(f), f, max_steps)
                for domain, ids in record.items() for f in (path.parent / "examples" / domain / f"{i}.json" for i in ids)]
    return [task_from_record(record, path, max_steps)]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError("no such file", file=str(path)) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"not a JSON file: {exc}", file=str(path)) from None


def _is_index(record: Any) -> bool:
    return (isinstance(record, dict) and bool(record) and "id" not in record
            and all(isinstance(v, list) and all(isinstance(i, str) for i in v) for v in record.values()))


def task_from_record(record: Any, file: Path, max_steps: int = DEFAULT_MAX_STEPS) -> Task:
    """One OSWorld task record (read from ``file``) as a :class:`Task`, its shape checked.

    Raises:
        DataError: naming ``file`` and the field that is missing or malformed.
    """

    def bad(field: str, message: str) -> DataError:
        return DataError(message, file=str(file), record=field)

    if not isinstance(record, dict):
        raise bad("<top level>", f"an OSWorld task is a JSON object, got {type(record).__name__}")
    for field in ("id", "instruction"):
        if not isinstance(record.get(field), str) or not record[field].strip():
            raise bad(field, "missing or not a non-empty string")
    config = record.get("config", [])
    if not isinstance(config, list):
        raise bad("config", "must be a list of setup steps")
    for i, step in enumerate(config):
        if not isinstance(step, dict) or not isinstance(step.get("type"), str):
            raise bad(f"config[{i}].type", "a setup step needs a string 'type'")
        if not isinstance(step.get("parameters", {}), dict):
            raise bad(f"config[{i}].parameters", "must be an object")
    evaluator = record.get("evaluator")
    if not isinstance(evaluator, dict):
        raise bad("evaluator", "missing or not an object")
    func = evaluator.get("func")
    if isinstance(func, list):
        if not func or not all(isinstance(f, str) for f in func):
            raise bad("evaluator.func", "a list of metric names must be non-empty strings")
        # OSWorld pairs the i-th metric with the i-th result getter, expected getter and options.
        for key in ("result", "expected", "options"):
            value = evaluator.get(key)
            if value is not None and not (isinstance(value, list) and len(value) == len(func)):
                raise bad(f"evaluator.{key}", f"with {len(func)} metrics it must be a list of {len(func)}")
        if evaluator.get("conj", "and") not in ("and", "or"):
            raise bad("evaluator.conj", "must be 'and' or 'or'")
    elif not isinstance(func, str) or not func:
        raise bad("evaluator.func", "missing or not a metric name (or a list of them)")
    elif func != "infeasible" and not isinstance(evaluator.get("result"), dict):
        raise bad("evaluator.result", "a metric needs its result getter object")
    if not isinstance(evaluator.get("postconfig", []), list):
        raise bad("evaluator.postconfig", "must be a list of setup steps")
    domain = file.parent.name
    return Task(
        task_id=record["id"],
        instruction=record["instruction"],
        env="osworld",
        template=domain,
        max_steps=max_steps,
        params={"config": config, "evaluator": evaluator, "file": str(file),
                **{k: record[k] for k in ("snapshot", "source", "related_apps") if k in record}},
    )
