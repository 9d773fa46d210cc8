"""Typed, documented, strict configuration.

Configs are pydantic models whose fields carry their help text. YAML files in ``configs/`` are
serialised instances of :class:`guiagent.schema.GuiAgentConfig` (or of one of its sections). Loading is strict: an
unknown or misspelt key fails with the file, the key path and the closest valid key::

    ConfigError: configs/train.yaml: policy.max_pixles: unknown key (did you mean 'max_pixels'?)

The YAML itself is read strictly too: a key given twice in one mapping is an error (YAML would keep the
last one silently), and a file whose aliases expand to more than :data:`MAX_YAML_VALUES` values (a
"billion laughs" bomb) is refused before anything walks it.

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
from pydantic_core import ErrorDetails

from guiagent.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

MAX_CONFIG_BYTES = 1 << 20  # config files are a few KiB: refuse a big (or endless) file before reading it all
MAX_YAML_VALUES = 100_000  # values of one file with its aliases expanded; far above any real config


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


def error_message(item: ErrorDetails, model: type[BaseModel]) -> str:
    """The message of one of ``model``'s validation errors, without its key path: an unknown key with the
    closest valid key (or the valid keys)."""
    loc = item["loc"]
    if item["type"] == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        valid = list(parent.model_fields) if parent is not None else []
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else (f" (valid keys: {', '.join(valid)})" if valid else "")
        return f"unknown key{hint}"
    # pydantic prefixes messages raised by validators with "Value error, "; the key path says enough.
    return item["msg"].removeprefix("Value error, ")


def _explain(error: ValidationError, model: type[BaseModel], source: str) -> ConfigError:
    lines = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"])
        message = error_message(item, model)
        lines.append(f"{path}: {message}" if path else message)
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
        ConfigError: the file is missing, not UTF-8 text, not YAML (or a key is given twice, or its aliases
            expand too far), or does not validate (file, key path, closest key).
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes, not a config file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start]
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start} is {bad:#04x})") from None
    return parse_config(_load_yaml(text, str(path)), model, str(path))


def _load_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load(text)``, refusing a key given twice in one mapping and an alias bomb."""
    try:
        loader = yaml.SafeLoader(text)  # refuses control characters (a binary file that happens to be UTF-8)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_nodes(node, loader, source)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:  # PyYAML composes and constructs recursively
        raise ConfigError(f"{source}: not valid YAML: nested too deeply") from None


def _check_nodes(root: yaml.Node, loader: yaml.SafeLoader, source: str) -> None:
    """Count ``root``'s values with aliases expanded, without expanding them (each node is counted once
    and its count reused), and check that no mapping gives a key twice.

    Raises:
        ConfigError: more than ``MAX_YAML_VALUES`` values, an alias inside its own anchor, or a duplicate
            key (file, line and key).
    """
    counts: dict[int, int | None] = {}  # id(node) -> values under it, aliases expanded; None while counting

    def count(node: yaml.Node) -> int:
        if id(node) in counts:
            known = counts[id(node)]
            if known is None:
                line = node.start_mark.line + 1
                raise ConfigError(f"{source}: line {line}: an anchored value holds an alias of itself")
            return known
        counts[id(node)] = None
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            _check_unique_keys(node, loader, source)
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        total = 1
        for child in children:
            total += count(child)
            if total > MAX_YAML_VALUES:
                raise ConfigError(f"{source}: more than {MAX_YAML_VALUES} values once its aliases are "
                                  "expanded (an alias bomb?); refused")
        counts[id(node)] = total
        return total

    count(root)


def _check_unique_keys(node: yaml.MappingNode, loader: yaml.SafeLoader, source: str) -> None:
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        # A merge key (``<<: *base``) brings keys that the mapping's own keys override, as YAML intends.
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)  # compared as values: `1` and `0x1` are one key
        line = key_node.start_mark.line + 1
        if key in first_line:
            raise ConfigError(f"{source}: line {line}: duplicate key {key!r} (first given on line "
                              f"{first_line[key]}); YAML would silently keep only the last one")
        first_line[key] = line


def dump_config(config: BaseModel) -> str:
    """Serialise a config to YAML that :func:`load_config` reads back to an equal instance."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
