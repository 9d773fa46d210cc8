"""The allow-list every piece of pyautogui code passes before it may run inside an OSWorld VM.

An agent's code is text from a model: it must never run on the host, and what runs inside the VM must be
what was checked. So the code is parsed with :mod:`ast` (never executed here), only ``import pyautogui`` /
``import time``, ``pyautogui.FAILSAFE = False`` and calls ``pyautogui.<known function>(literals)`` /
``time.sleep(n)`` are accepted (:func:`guiagent.actions.convert.from_osworld_pyautogui` reads the calls),
and the VM is sent code *re-written* from the canonical actions that were read, not the original text.
Anything else — ``import os``, ``open``, ``__import__``, ``exec``/``eval``, attribute chains like
``pyautogui.os.system`` or dunder attributes, non-literal arguments — is an :class:`ActionError`.
"""

from __future__ import annotations

import ast

from guiagent.actions.convert import from_osworld_pyautogui
from guiagent.errors import ActionError
from guiagent.types import Action

ALLOWED_MODULES = ("pyautogui", "time")


def _is_failsafe_off(statement: ast.stmt) -> bool:
    """``pyautogui.FAILSAFE = False``: OSWorld's own prefix, harmless, accepted and dropped."""
    return (isinstance(statement, ast.Assign) and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Attribute)
            and isinstance(statement.targets[0].value, ast.Name) and statement.targets[0].value.id == "pyautogui"
            and statement.targets[0].attr == "FAILSAFE"
            and isinstance(statement.value, ast.Constant) and statement.value.value is False)


def check_pyautogui(code: str) -> tuple[Action, ...]:
    """The canonical actions ``code`` performs, after the allow-list check.

    Args:
        code: OSWorld pyautogui action code (statements separated by newlines or ``;``), or one of OSWorld's
            special codes ``WAIT``, ``DONE``, ``FAIL``.

    Raises:
        ActionError: the code is not valid Python, imports anything but pyautogui/time, or does anything but
            call known pyautogui functions and ``time.sleep`` with literal arguments.
    """
    if not isinstance(code, str):
        raise ActionError(f"pyautogui code must be a string, got {type(code).__name__}")
    if code.strip() in ("WAIT", "DONE", "FAIL"):
        return from_osworld_pyautogui(code.strip())
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError) as exc:
        raise ActionError(f"pyautogui code does not parse: {str(exc)[:200]}") from None
    kept = []
    for statement in tree.body:
        if isinstance(statement, ast.Import):
            names = [(alias.name, alias.asname) for alias in statement.names]
            bad = [n for n, alias in names if n not in ALLOWED_MODULES or alias not in (None, n)]
            if bad:
                raise ActionError(f"line {statement.lineno}: importing {', '.join(bad)} is not allowed "
                                  f"(only {', '.join(ALLOWED_MODULES)})")
            continue
        if isinstance(statement, ast.ImportFrom):
            raise ActionError(f"line {statement.lineno}: 'from ... import' is not allowed")
        if _is_failsafe_off(statement):
            continue
        for node in ast.walk(statement):  # belt and braces: from_osworld_pyautogui refuses these too
            if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                raise ActionError(f"line {statement.lineno}: attribute {node.attr!r} is not allowed")
            if isinstance(node, ast.Name) and node.id not in ALLOWED_MODULES and node.id not in ("True", "False", "None"):
                raise ActionError(f"line {statement.lineno}: name {node.id!r} is not allowed")
        kept.append(statement)
    if not kept:
        raise ActionError("pyautogui code performs no action")
    return from_osworld_pyautogui(ast.unparse(ast.Module(body=kept, type_ignores=[])))
