"""Typed, documented, strict configuration.

Configs are pydantic models whose fields carry their help text. YAML files in ``configs/`` are
serialised instances of :class:`guiagent.schema.GuiAgentConfig` (or of one of its sections). Loading is strict: an
unknown or misspelt key fails with the file, the key path and the closest valid key::

    ConfigError: configs/train.yaml: policy.max_pixles: unknown key (did you mean 'max_pixels'?)

Each subsystem defines its section model in its own module on the :class:`StrictModel` base;
:mod:`guiagent.schema` puts them together into the whole-file schema. This module sits below every
section (it is imported by them), so the loader takes the model to validate against from its caller
and never reaches up for the schema.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from guiagent.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# --- Loading ----------------------------------------------------------------------------------------------


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Follow ``loc`` (a pydantic error location) through nested model fields; None where it leaves models."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = _section_model(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _section_model(annotation: Any) -> Any:
    """The model inside an optional section (``AndroidEnvConfig | None`` → ``AndroidEnvConfig``)."""
    models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if len(models) == 1 else annotation


def _explain(error: ValidationError, model: type[BaseModel], source: str) -> ConfigError:
    lines = []
    for item in error.errors():
        loc = item["loc"]
        path = ".".join(str(p) for p in loc) or "<root>"
        if item["type"] == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            valid = list(parent.model_fields) if parent is not None else []
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else (f" (valid keys: {', '.join(valid)})" if valid else "")
            lines.append(f"{path}: unknown key{hint}")
        else:
            # pydantic prefixes messages raised by validators with "Value error, "; the key path says enough.
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"{path}: {message}" if loc else message)
    return ConfigError(f"{source}: " + "; ".join(lines))


def parse_config(data: Any, model: type[M], source: str = "<config>") -> M:
    """Validate an already-loaded mapping against ``model`` (a whole file is
    :class:`guiagent.schema.GuiAgentConfig`, a section its own model); errors name ``source`` and the key path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, model, source) from None


def load_config(path: str | Path, model: type[M]) -> M:
    """Load a YAML file strictly into ``model`` (a whole file is :class:`guiagent.schema.GuiAgentConfig`).

    Raises:
        ConfigError: the file is missing, not YAML, or does not validate (file, key path, closest key).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(data, model, str(path))


def dump_config(config: BaseModel) -> str:
    """Serialise a config to YAML that :func:`load_config` reads back to an equal instance."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
