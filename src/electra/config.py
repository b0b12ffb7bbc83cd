"""Dataclass configs: defaults, presets, config files and ``key=value`` overrides, unknown keys rejected."""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from electra.errors import UserError

C = TypeVar("C")


def field_names(cls_or_obj) -> list[str]:
    return [f.name for f in dataclasses.fields(cls_or_obj)]


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Turn a CLI string (or a JSON value) into the field's declared type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key '{key}' expects a comma-separated list, got {value!r}")
        item_type = args[0] if args else str
        return tuple(_coerce(v, item_type, key) for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise UserError(f"config key '{key}' expects true/false, got {value!r}")
    if annotation in (int, float):
        if isinstance(value, bool):
            raise UserError(f"config key '{key}' expects {annotation.__name__}, got {value!r}")
        try:
            number = float(value) if annotation is float else int(str(value).replace("_", ""))
        except (ValueError, TypeError, OverflowError):
            raise UserError(f"config key '{key}' expects {annotation.__name__}, got {value!r}") from None
        if not math.isfinite(number):
            raise UserError(f"config key '{key}' must be a finite number, got {value!r}")
        return number
    if annotation is str:
        return str(value)
    return value


def apply_overrides(cfg: C, overrides: dict[str, Any]) -> C:
    """Return a copy of ``cfg`` with ``overrides`` applied; unknown keys are a UserError listing the valid ones."""
    hints = typing.get_type_hints(type(cfg))
    valid = field_names(cfg)
    changes = {}
    for raw_key, value in overrides.items():
        key = raw_key.replace("-", "_")
        if key not in valid:
            raise UserError(f"unknown config key '{raw_key}'; valid keys: {', '.join(valid)}")
        changes[key] = _coerce(value, hints[key], key)
    out = dataclasses.replace(cfg, **changes)
    validate = getattr(out, "validate", None)
    if validate is not None:
        validate()
    return out


def parse_assignments(items: list[str]) -> dict[str, str]:
    """Parse ``key=value`` strings and ``--key value`` / ``--key=value`` pairs left over by argparse."""
    out: dict[str, str] = {}
    i = 0
    while i < len(items):
        item = items[i]
        if item.startswith("--"):
            body = item[2:]
            if "=" in body:
                key, value = body.split("=", 1)
            elif i + 1 < len(items) and not items[i + 1].startswith("--"):
                key, value = body, items[i + 1]
                i += 1
            else:
                key, value = body, "true"
        elif "=" in item:
            key, value = item.split("=", 1)
        else:
            raise UserError(f"unexpected argument '{item}'; config overrides look like key=value or --key value")
        out[key.replace("-", "_")] = value
        i += 1
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or TOML file of config keys (the format a run folder's config.json is written in)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        if path.suffix == ".toml":
            return tomllib.loads(path.read_text(encoding="utf-8"))
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"config file {path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold an object of config keys")
    return data


def to_dict(cfg) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}


def check(checks: list[tuple[bool, str]]) -> None:
    """Raise the first failed (condition, message) as a one-line config error."""
    for ok, message in checks:
        if not ok:
            raise UserError(f"bad config: {message}")


def from_preset(cls: type[C], presets: dict[str, dict], name: str, track: str) -> C:
    if name not in presets:
        raise UserError(f"unknown {track} preset '{name}'; choose one of {', '.join(presets)}")
    return apply_overrides(cls(preset=name), presets[name])


def from_saved(cls: type[C], values: dict[str, Any], track: str) -> C:
    """Rebuild a config saved in a run folder; keys this track does not know mean the run is another track's."""
    unknown = sorted(set(values) - set(field_names(cls)))
    if unknown:
        raise UserError(f"config has keys a {track} run does not know ({', '.join(unknown[:5])}); "
                        f"is this another track's run?")
    return apply_overrides(cls(), values)
