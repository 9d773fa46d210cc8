"""Advantage estimators and policy losses, registered by name.

The trainer looks both up by the names in its config and never special-cases one (CONVENTIONS §2).

Calling conventions (every registered function follows its kind's convention):

* advantage estimator: ``fn(batch: AdvantageBatch, **options) -> Tensor`` of shape (N,), one advantage
  per row, 0 on rows whose ``mask`` is False. Options are keyword-only with paper defaults.
* policy loss: ``fn(logprobs, old_logprobs, advantages, mask, ref_logprobs=None, entropy=None,
  **options) -> (loss, metrics)`` with logprobs/old_logprobs/mask/ref_logprobs/entropy (B, T),
  advantages (B,) or (B, T), a scalar loss and a dict of floats.

Tensors are positional parameters; options (the values a config file sets) are keyword-only, which is
how :func:`options_model` tells them apart. Their annotations are their types: a config's options are
validated against them when it loads (:func:`validate_options`), not when a long run first calls.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import operator
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic_core import InitErrorDetails, PydanticCustomError

from guiagent.config import error_message
from guiagent.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])

_ADVANTAGES: dict[str, Callable[..., Any]] = {}
_LOSSES: dict[str, Callable[..., Any]] = {}


def register_in(table: dict[str, Callable[..., Any]], kind: str, name: str) -> Callable[[F], F]:
    """Decorator adding a function to ``table`` under ``name``; every registry (advantages, losses,
    rewards) registers this way, so a second registration of a name raises ``ValueError`` everywhere."""

    def decorator(fn: F) -> F:
        if name in table:
            raise ValueError(f"{kind} {name!r} is already registered (by {table[name].__module__}."
                             f"{table[name].__qualname__})")
        table[name] = fn
        return fn

    return decorator


def register_advantage(name: str) -> Callable[[F], F]:
    """Decorator: register an advantage estimator under ``name``; a second registration raises."""
    return register_in(_ADVANTAGES, "advantage estimator", name)


def register_loss(name: str) -> Callable[[F], F]:
    """Decorator: register a policy loss under ``name``; a second registration raises."""
    return register_in(_LOSSES, "loss", name)


def _load_builtins() -> None:
    # Registration happens when the defining modules are imported; import them on first lookup so
    # that ``get_advantage("grpo")`` works without the caller knowing where "grpo" lives.
    from guiagent.algos import advantages, losses  # noqa: F401


def lookup_in(table: dict[str, Callable[..., Any]], kind: str, name: str) -> Callable[..., Any]:
    """``table[name]``, or a ConfigError naming the ``kind`` and listing the known names."""
    try:
        return table[name]
    except KeyError:
        raise ConfigError(f"unknown {kind} {name!r}; known: {', '.join(sorted(table))}") from None


def get_advantage(name: str) -> Callable[..., Any]:
    """The advantage estimator registered as ``name``.

    Raises:
        ConfigError: no such name; the message lists the known names.
    """
    _load_builtins()
    return lookup_in(_ADVANTAGES, "advantage estimator", name)


def get_loss(name: str) -> Callable[..., Any]:
    """The policy loss registered as ``name``.

    Raises:
        ConfigError: no such name; the message lists the known names.
    """
    _load_builtins()
    return lookup_in(_LOSSES, "loss", name)


def advantage_names() -> list[str]:
    """Names of all registered advantage estimators, sorted."""
    _load_builtins()
    return sorted(_ADVANTAGES)


def loss_names() -> list[str]:
    """Names of all registered policy losses, sorted."""
    _load_builtins()
    return sorted(_LOSSES)


@functools.cache
def options_model(fn: Callable[..., Any]) -> type[BaseModel]:
    """A strict pydantic model of ``fn``'s options: one field per keyword-only parameter, with its
    annotation as the type (unannotated: any value) and its default (none: required).

    A ``SomeModel | dict`` option is validated as ``SomeModel``: the ``dict`` lets Python callers pass a
    plain mapping, and a mapping in a config file is that model written out, so its keys and types are
    checked when the config loads as well.
    """
    hints = typing.get_type_hints(fn)
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (_model_not_dict(hints.get(param.name, Any)), default)
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    return create_model(f"{fn.__name__}_options", __config__=config, **fields)


def _model_not_dict(annotation: Any) -> Any:
    """``annotation`` without its ``dict`` members when it is a union that also holds a pydantic model."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return annotation
    members = typing.get_args(annotation)
    if not any(isinstance(m, type) and issubclass(m, BaseModel) for m in members):
        return annotation
    kept = [m for m in members if m is not dict and typing.get_origin(m) is not dict]
    return functools.reduce(operator.or_, kept)


def validate_options(fn: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` checked against ``fn``'s keyword options (:func:`options_model`): names and types.

    Returns:
        The given options as ``fn``'s annotations type them (``"0.5"`` for a float → ``0.5``, a mapping for a
        model → the model); options left out are left out, so ``fn`` applies its own defaults.

    Raises:
        ValueError: an unknown option; the message names it and lists the valid options.
        ValidationError: a value of the wrong type, located at its key path inside ``options``
            (``gamma``, ``config.format_weight``); raised inside a pydantic validator, the path continues
            the config's own (``algo.advantage_options.gamma``).
    """
    model = options_model(fn)
    valid = list(model.model_fields)
    unknown = sorted(set(options) - set(valid), key=str)
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), valid, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close and len(unknown) == 1 else ""
        names = ", ".join(map(str, unknown))
        raise ValueError(f"unknown option(s) {names}{hint}; valid: {', '.join(valid) or '-'}")
    try:
        validated = model.model_validate(dict(options))
    except ValidationError as exc:
        # Messages are settled here, where the model is known: the config's own model cannot name the
        # closest key of an unknown one inside an option.
        raise ValidationError.from_exception_data(exc.title, [
            InitErrorDetails(type=PydanticCustomError("invalid_option", "{message}",
                                                      {"message": error_message(item, model)}),
                             loc=item["loc"], input=item["input"])
            for item in exc.errors()
        ]) from None
    return {name: getattr(validated, name) for name in options}


def check_options(fn: Callable[..., Any], options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """:func:`validate_options` for callers outside a config model (a CLI's ``--option`` values).

    Raises:
        ConfigError: an unknown option or a value of the wrong type; the message names ``where`` and the
            option's key path, or lists the valid options.
    """
    try:
        return validate_options(fn, options)
    except ValidationError as exc:
        raise ConfigError("; ".join(
            f"{'.'.join(str(p) for p in (where, *item['loc']))}: {item['msg']}" for item in exc.errors()
        )) from None
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
