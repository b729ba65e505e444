"""Field checks shared by the record validators: one-line UserErrors that name the file and the field path."""

from __future__ import annotations

import math
from typing import Any

from soaes_bench.errors import UserError
from soaes_bench.io import find_nonfinite

NUMBER = "number"  # a finite int or float, never a bool: what every metric value must be


def is_number(x) -> bool:
    """True for a finite int/float (not bool, not NaN or Infinity)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _name(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _ok(v, types) -> bool:
    if types == NUMBER:
        return is_number(v)
    if types is int:
        return isinstance(v, int) and not isinstance(v, bool)
    return isinstance(v, types)


def _what(types) -> str:
    if types == NUMBER:
        return "a finite number"
    if isinstance(types, tuple):
        return " or ".join(t.__name__ for t in types)
    return {dict: "an object", list: "a list", str: "a string", bool: "true or false", int: "an integer"}.get(
        types, getattr(types, "__name__", str(types)))


def need(obj: dict, key: str, types, source, where: str = "", nullable: bool = False) -> Any:
    """obj[key], which must exist and have `types` (NUMBER, a type or a tuple of types; None too when nullable)."""
    if key not in obj:
        raise UserError(f"{source}: {_name(where, key)}: required field is missing")
    return check(obj[key], types, source, _name(where, key), nullable)


def optional(obj: dict, key: str, types, source, where: str = "", nullable: bool = True) -> Any:
    """obj.get(key), checked like `need` when present."""
    return check(obj[key], types, source, _name(where, key), nullable) if key in obj else None


def check(v, types, source, field: str, nullable: bool = False) -> Any:
    if (v is None and nullable) or _ok(v, types):
        return v
    return fail(source, field, f"expected {_what(types)}{' or null' if nullable else ''}, got {v!r:.60}")


def numbers(block, source, field: str) -> dict:
    """A {name: finite number or null} object (validation losses, seconds, shares)."""
    check(block, dict, source, field)
    for k, v in block.items():
        check(v, NUMBER, source, f"{field}.{k}", nullable=True)
    return block


def pair(v, source, field: str) -> None:
    """A [low, high] interval of finite numbers, or null."""
    if v is not None and not (isinstance(v, list) and len(v) == 2 and all(is_number(x) for x in v)):
        fail(source, field, f"expected [low, high] or null, got {v!r:.60}")


def finite(obj, source) -> None:
    """No NaN or Infinity anywhere in obj (an in-memory dict about to be written, or one parsed leniently)."""
    found = find_nonfinite(obj)
    if found:
        fail(source, found[0], f"{found[1]} is not a finite number (NaN and Infinity are refused; write null)")


def header(obj, source, schema: str, version: int, kind: str) -> int:
    """Check the object, its schema id and version (<= the newest this code reads); returns the version."""
    if not isinstance(obj, dict):
        raise UserError(f"{source}: expected a JSON object at top level, got {type(obj).__name__}")
    if obj.get("schema") != schema:
        fail(source, "schema", f"expected {schema!r} ({kind} record), got {obj.get('schema')!r}")
    v = need(obj, "schema_version", int, source)
    if v > version:
        fail(source, "schema_version", f"{v} is newer than this soaes-bench reads ({version}); upgrade soaes-bench")
    if v < 1:
        fail(source, "schema_version", f"expected 1 or more, got {v}")
    return v


def fail(source, field: str, message: str):
    raise UserError(f"{source}: {field}: {message}")


def stamped(obj: dict, schema: str, version: int) -> dict:
    """`obj` with its schema id and version first (any earlier stamp replaced), otherwise unchanged."""
    body = {k: v for k, v in obj.items() if k not in ("schema", "schema_version")}
    return {"schema": schema, "schema_version": version, **body}
