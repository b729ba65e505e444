"""File helpers shared by every module: atomic writes (never half-written results), JSON without NaN, JSONL, hashing."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from soaes_bench.errors import UserError


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temp file in the same folder, fsync, then rename: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give results the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


# NaN and Infinity are not JSON (RFC 8259): Python writes and reads them by default, most other readers fail on
# them, and a NaN metric compares unequal to itself. Writers refuse them, readers reject them, naming the field.
def find_nonfinite(obj: Any, where: str = "") -> tuple[str, Any] | None:
    """(field path like "tasks.t.metrics.acc.value" or "rows[2].ci[0]", value) of the first NaN/Infinity in obj."""
    if isinstance(obj, float) and not math.isfinite(obj) or isinstance(obj, _Constant):
        return where or "(top level)", obj
    if isinstance(obj, dict):
        items = ((f"{where}.{k}" if where else str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for sub, v in items:
        found = find_nonfinite(v, sub)
        if found:
            return found
    return None


class _Constant(str):
    """A NaN/Infinity token met while parsing, kept so the error can name its field."""


def _dumps(obj: Any, source, **kw) -> str:
    try:
        return json.dumps(obj, ensure_ascii=False, sort_keys=False, allow_nan=False, **kw)
    except ValueError:
        found = find_nonfinite(obj)
        if found is None:
            raise
        raise UserError(f"{source}: {found[0]}: {found[1]} is not a finite number; JSON has no NaN or Infinity "
                        f"(write null)") from None


def _loads(text: str, source) -> Any:
    seen: list[str] = []

    def constant(token: str) -> _Constant:
        seen.append(token)
        return _Constant(token)

    obj = json.loads(text, parse_constant=constant)
    if seen:
        field, token = find_nonfinite(obj)
        raise UserError(f"{source}: {field}: {token} is not valid JSON (NaN and Infinity are refused)")
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomic, UTF-8, indented; NaN/Infinity refused with the field named."""
    return atomic_write_text(path, _dumps(obj, path, indent=2) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """One object per line, atomic; NaN/Infinity refused with the line and field named."""
    text = "".join(_dumps(r, f"{path}:{i}") + "\n" for i, r in enumerate(rows, 1))
    return atomic_write_text(path, text)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return _loads(path.read_text(encoding="utf-8"), path)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read ({e.__class__.__name__})") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, object) for each non-blank line; a bad line raises UserError naming file and line."""
    path = Path(path)
    try:
        f = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.__class__.__name__})") from None
    with f:
        yield from parse_jsonl(f, path)


def parse_jsonl(lines: Iterable[str], source) -> Iterator[tuple[int, dict]]:
    """(line_number, object) for each non-blank line of `lines`; errors name `source` and the line."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = _loads(line, f"{source}:{lineno}")
        except json.JSONDecodeError as e:
            raise UserError(f"{source}:{lineno}: invalid JSON: {e.msg}") from None
        if not isinstance(obj, dict):
            raise UserError(f"{source}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    return [obj for _, obj in iter_jsonl(path)]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_files(paths: Iterable[str | os.PathLike]) -> str:
    """One hash over several files (sorted by name, name included) — e.g. all safetensors shards of a model."""
    h = hashlib.sha256()
    for p in sorted(Path(p) for p in paths):
        h.update(p.name.encode())
        h.update(bytes.fromhex(sha256_file(p)))
    return h.hexdigest()
