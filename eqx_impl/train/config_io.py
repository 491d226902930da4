"""Configs from and to plain values: typed conversion of nested mappings into the frozen
sections of `config` (`config_from_dict`), YAML/JSON files (`load_config`, `dump_config`)
and `section.key=value` overrides (`apply_overrides`). Every bad file, key or value raises
`ConfigError` naming the dotted key and what would be accepted; no JAX is loaded."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from eqx_impl.train.config import Config
from eqx_impl.train.errors import ConfigError

__all__ = [
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "load_config",
    "parse_override",
    "read_mapping",
]


# --- conversion of values ------------------------------------------------------------------


def _describe(tp) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(value, tp, where: str):
    """`value` as type `tp` (the field's annotation), or `ConfigError`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where} must be {_describe(tp)}, got {value!r}.")
    if origin is list:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigError(f"{where} must be {_describe(tp)}, got {value!r}.")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping of keyword arguments, got {value!r}.")
        return {str(k): v for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{where} must be {_describe(tp)}, got {value!r}.")


def _section_from_dict(cls, values, where: str):
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {values!r}.")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ConfigError(f"Unknown key {where}.{unknown[0]}; the keys of {where} are: {', '.join(names)}.")
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    return cls(**kwargs)


# Each section's default_factory is its class.
_SECTIONS: dict[str, type] = {f.name: typing.cast(type, f.default_factory) for f in dataclasses.fields(Config)}


def config_from_dict(values: Mapping[str, Any]) -> Config:
    """Build and check a `Config` from nested mappings (missing keys take the defaults).

    **Returns:** a `Config`.
    """
    if not isinstance(values, Mapping):
        raise ConfigError(f"A configuration must be a mapping of sections, got {values!r}.")
    unknown = [k for k in values if k not in _SECTIONS]
    if unknown:
        raise ConfigError(f"Unknown section {unknown[0]!r}; the sections are: {', '.join(_SECTIONS)}.")
    sections = {name: _section_from_dict(cls, values.get(name), name) for name, cls in _SECTIONS.items()}
    return Config(**sections)


def config_to_dict(config: Config) -> dict[str, Any]:
    """**Returns:** the configuration as nested plain dicts (YAML/JSON ready)."""
    return dataclasses.asdict(config)


# --- files and overrides -------------------------------------------------------------------


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Parse a YAML (`.yaml`/`.yml`) or JSON (`.json`) file into a mapping.

    **Returns:** a dict (empty for an empty file).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"Config file {str(path)!r} not found"
            + ("" if not path.parent.is_dir() else f" (the folder {str(path.parent)!r} exists)")
            + "; pass --config with the path of a YAML or JSON file, e.g. configs/digits.yaml."
        )
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            values = json.loads(text) if text.strip() else {}
        else:
            values = yaml.safe_load(text) or {}
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise ConfigError(f"Cannot parse config file {str(path)!r}: {err}") from None
    if not isinstance(values, Mapping):
        raise ConfigError(
            f"Config file {str(path)!r} must hold a mapping of sections "
            f"({', '.join(_SECTIONS)}), got {type(values).__name__}."
        )
    return dict(values)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`"a.b.c=value"` → `(["a", "b", "c"], value)`, the value read as YAML (`3`, `1.5`,
    `true`, `null`, `[32, 64]`, `{bias: 3}`; anything else stays a string).

    **Returns:** `(key path, value)`.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            f"Override {text!r} must look like section.key=value "
            "(e.g. train.steps=2000 or objective.weighting_args.bias=3)."
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(values: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply `section.key=value` overrides to nested mappings (copied, not modified).

    `section.key` must name a known field; deeper keys set entries of a mapping field
    (`objective.weighting_args.bias=3`).

    **Returns:** the new nested dict.
    """
    result = json.loads(json.dumps(values, default=str)) if values else {}
    for text in overrides:
        path, value = parse_override(text)
        section = path[0]
        if section not in _SECTIONS:
            raise ConfigError(
                f"Override {text!r}: unknown section {section!r}; the sections are: {', '.join(_SECTIONS)}."
            )
        names = [f.name for f in dataclasses.fields(_SECTIONS[section])]
        if len(path) < 2 or path[1] not in names:
            what = path[1] if len(path) > 1 else "(none)"
            raise ConfigError(
                f"Override {text!r}: unknown key {section}.{what}; the keys of {section} are: {', '.join(names)}."
            )
        node = result.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"Override {text!r}: {section} is not a mapping in the file.")
        for i, part in enumerate(path[1:-1], start=1):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"Override {text!r}: {'.'.join(path[: i + 1])} is {child!r}, not a mapping.")
            node = child
        node[path[-1]] = value
    return result


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read a config file (or start from the defaults), apply overrides, check everything.

    **Returns:** a `Config`.
    """
    values = read_mapping(path) if path is not None else {}
    return config_from_dict(apply_overrides(values, overrides))


def dump_config(config: Config, path: str | Path) -> None:
    """Write `config` as YAML (keys in declaration order), atomically."""
    from eqx_impl.train.files import atomic_write_text

    text = yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=None)
    atomic_write_text(Path(path), text)
