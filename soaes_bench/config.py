"""YAML (safe_load) -> dataclasses, with errors that name the file and the key.

Every recipe, gate list and policy goes through `load_dataclass`, so a typo such as `lerning_rate` fails with
"recipe.yaml: phases.cpt.lerning_rate: unknown key (did you mean learning_rate?)" instead of being ignored.
Dataclass fields may declare `metadata={"help": ..., "check": callable}`; `check` returns an error string or None.
A key given twice in one mapping is an error (PyYAML would keep the last one silently), and every float field
must be finite (YAML's .inf and .nan are refused, after the dataclass's own __post_init__ checks).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from soaes_bench.errors import UserError

T = TypeVar("T")


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping holding the same key twice, naming the line of the second one."""


def _unique_mapping(loader, node, deep=False):
    seen: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` keys may be overridden: that is their point
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: construct_mapping reports it
            continue
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first given at line {first + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


class TaskYamlLoader(UniqueKeyLoader):
    """UniqueKeyLoader for lm-eval task files: local tags such as `!function utils.process` are kept as data
    ({"!function": "utils.process"}) instead of failing, as lm-eval resolves them itself."""


def _local_tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {f"!{suffix}": value}


TaskYamlLoader.add_multi_constructor("!", _local_tag)


def utf8_message(path, byte: int, line: int) -> str:
    """One line for a file that is not UTF-8: where the first bad byte is, and what to do."""
    return (f"{path}: not UTF-8 text (byte 0x{byte:02x} at line {line}; GBK or another legacy encoding?); "
            "save it as UTF-8")


def utf8_problem(path, data: bytes, err: UnicodeDecodeError) -> str:
    return utf8_message(path, data[err.start], data.count(b"\n", 0, err.start) + 1)


def read_text(path: str | Path) -> str:
    """A UTF-8 text file (a leading BOM tolerated); a missing, unreadable or non-UTF-8 file is one UserError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e.__class__.__name__})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(utf8_problem(path, data, e)) from None


def parse_yaml(text: str, source, loader=UniqueKeyLoader) -> Any:
    """YAML text -> data; errors (syntax, duplicate keys) name `source` and the line."""
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 -- loader is a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        raise UserError(f"{source}: invalid YAML{where}: {problem}") from None


def load_yaml(path: str | Path, loader=UniqueKeyLoader) -> Any:
    path = Path(path)
    return parse_yaml(read_text(path), path, loader)


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
    for name in fields:
        bad = _non_finite(getattr(obj, name))
        if bad is not None:
            raise UserError(f"{source}: {prefix}{name}: must be a finite number, got {bad}")
    for name, f in fields.items():
        check = f.metadata.get("check")
        if check is not None:
            problem = check(getattr(obj, name))
            if problem:
                raise UserError(f"{source}: {prefix}{name}: {problem}")
    return obj


def _non_finite(value):
    """The first inf/nan float in a field value (plain floats, lists and dicts of them), else None. Nested
    dataclasses are checked when they are built."""
    if isinstance(value, float):
        return None if math.isfinite(value) else value
    if isinstance(value, (list, tuple)):
        return next((b for b in map(_non_finite, value) if b is not None), None)
    if isinstance(value, dict):
        return _non_finite(list(value.values()))
    return None


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
