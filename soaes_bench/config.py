"""YAML (safe_load) -> dataclasses, with errors that name the file and the key.

Every recipe, gate list and policy goes through `load_dataclass`, so a typo such as `lerning_rate` fails with
"recipe.yaml: phases.cpt.lerning_rate: unknown key (did you mean learning_rate?)" instead of being ignored.
Dataclass fields may declare `metadata={"help": ..., "check": callable}`; `check` returns an error string or None.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from soaes_bench.errors import UserError

T = TypeVar("T")


def load_yaml(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read ({e.__class__.__name__})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}: invalid YAML{where}: {getattr(e, 'problem', e)}") from None


def suggest(name: str, options) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp, where: str, source: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, where, source)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0] if errors else f"{source}: {where}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise UserError(f"{source}: {where}: must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, source)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise UserError(f"{source}: {where}: expected a list, got {type(value).__name__}")
        inner = args[0] if args else Any
        out = [_convert(v, inner, f"{where}[{i}]", source) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{source}: {where}: expected a mapping, got {type(value).__name__}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, vt, f"{where}.{k}", source) for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{source}: {where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{source}: {where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{source}: {where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{source}: {where}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise UserError(f"{source}: {where}: expected {_type_name(tp)}, got {value!r}")
    return value


def _build(cls, data: Any, where: str, source: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{source}: {where or 'top level'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in fields:
            raise UserError(f"{source}: {prefix}{key}: unknown key{suggest(str(key), fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], prefix + name, source)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise UserError(f"{source}: {prefix}{name}: required key is missing")
    try:
        obj = cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise UserError(f"{source}: {where or 'top level'}: {e}") from None
    for name, f in fields.items():
        check = f.metadata.get("check")
        if check is not None:
            problem = check(getattr(obj, name))
            if problem:
                raise UserError(f"{source}: {prefix}{name}: {problem}")
    return obj


def from_dict(cls: type[T], data: Any, source: str = "<config>") -> T:
    """Build dataclass `cls` from plain data, validating types, unknown keys and field checks."""
    return _build(cls, data, "", source)


def load_dataclass(cls: type[T], path: str | Path) -> T:
    """Load a YAML file into dataclass `cls`; every error names `path` and the dotted key."""
    return from_dict(cls, load_yaml(path), str(path))


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


# Small reusable field checks ------------------------------------------------------------------
def positive(v):
    return None if v is None or v > 0 else f"must be > 0, got {v}"


def non_negative(v):
    return None if v is None or v >= 0 else f"must be >= 0, got {v}"


def fraction(v):
    return None if v is None or 0.0 <= v <= 1.0 else f"must be in [0, 1], got {v}"
