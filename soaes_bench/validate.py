"""Checks every command runs on its inputs before it does any work: each failure is one UserError (one line, exit 2)
that names the file, field or option and what is wrong.

- options(command, args): numeric CLI options finite and in range (seeds in numpy's [0, 2**32 - 1], counts >= 1,
  temperature >= 0), output paths usable;
- output_dir / output_file: an output path that can be created and written, never inside the installed package;
- input_file / utf8_file: an input file that exists and is UTF-8 text (a GBK file is named, with the line);
- model_dir: a Hugging Face model directory whose config.json and safetensors agree (no missing or unexpected
  tensors, shapes as the config implies), whose files are complete (a truncated model.safetensors is caught from
  its header) and whose weights are all finite; read from the safetensors headers and tensors, the model itself is
  built only on the meta device (no memory) to list the tensors the config implies;
- task_folder: every YAML file of an lm-eval task folder (--include-path) parses, is UTF-8 and has no duplicate
  key (lm-eval's TaskManager skips a broken file silently).

Base layer: imports only errors, config, paths and third-party packages.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from pathlib import Path

from soaes_bench.config import TaskYamlLoader, parse_yaml, read_text, utf8_message
from soaes_bench.errors import UserError
from soaes_bench.paths import PACKAGE_DIR

SEED_MAX = 2**32 - 1  # numpy.random.seed accepts [0, 2**32 - 1]; lm-eval seeds numpy with --seed


# ---------------------------------------------------------------- numbers
def positive_int(name: str, value, wording: str = "must be a positive integer") -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise UserError(f"{name}: {wording}, got {value!r}")


def seed(name: str, value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX):
        raise UserError(f"{name}: must be an integer in [0, {SEED_MAX}] (numpy's seed range), got {value!r}")


def finite(name: str, value, lo: float | None = None, hi: float | None = None) -> None:
    """A finite number within [lo, hi] (either bound optional); None passes."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{name}: must be a finite number, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f">= {lo}" if hi is None else f"<= {hi}" if lo is None else f"in [{lo}, {hi}]"
        raise UserError(f"{name}: must be {bounds}, got {value!r}")


def int_list(name: str, values, lo: int = 1, allow_empty: bool = False) -> None:
    if values is None or (allow_empty and not values):
        return
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < lo for v in values):
        raise UserError(f"{name}: need one or more values >= {lo}, got {list(values)}")


# CLI option (argparse dest) -> check. Messages keep the wording the commands used before this pass.
_OPTION_CHECKS = {
    "seed": lambda v: seed("--seed", v),
    "threads": lambda v: positive_int("--threads", v, "must be >= 1"),
    "limit": lambda v: positive_int("--limit", v),
    "batch_size": lambda v: positive_int("--batch-size", v),
    "gen_batch_size": lambda v: positive_int("--gen-batch-size", v),
    "max_new_tokens": lambda v: positive_int("--max-new-tokens", v, "must be >= 1"),
    "repeats": lambda v: positive_int("--repeats", v, "must be >= 1"),
    "num_prompts": lambda v: positive_int("--num-prompts", v, "must be >= 1"),
    "resamples": lambda v: positive_int("--resamples", v, "must be >= 1"),
    "temperature": lambda v: finite("--temperature", v, lo=0),
    "max_leak": lambda v: finite("--max-leak", v, lo=0, hi=1),
    "gamma": lambda v: int_list("--gamma", v),
    "contexts": lambda v: int_list("--contexts", v, allow_empty=True),
}
# command -> what its --output names: a directory it fills, or one file (a command without --output is skipped)
OUTPUT_KINDS = {"run": "dir", "train base": "dir", "pipeline": "dir", "gate": "dir", "profile": "dir", "plot": "dir",
                "compare": "file", "report": "file", "check": "file"}


# options naming an input text file: when the file exists it must be UTF-8 (a missing one is the command's message)
_TEXT_INPUTS = {"pred": "--pred", "ref": "--ref", "policy": "--policy", "recipe": "--recipe", "prompts": "--prompts"}


def options(command: str, args) -> None:
    """Every numeric option of a parsed CLI namespace, its input text files and its --output path, before the
    command starts."""
    for dest, check in _OPTION_CHECKS.items():
        if hasattr(args, dest):
            check(getattr(args, dest))
    for dest, flag in _TEXT_INPUTS.items():
        value = getattr(args, dest, None)
        if isinstance(value, str) and Path(value).is_file():
            try:
                utf8_file(value)
            except UserError as e:
                raise UserError(f"{flag}: {e}") from None
    out = getattr(args, "output", None)
    if out is not None and command in OUTPUT_KINDS:
        (output_dir if OUTPUT_KINDS[command] == "dir" else output_file)(out, "--output")


# ---------------------------------------------------------------- paths
def inside_package(path) -> bool:
    p = Path(path).resolve()
    return p == PACKAGE_DIR or PACKAGE_DIR in p.parents


def not_in_package(path, what: str = "--output") -> None:
    if inside_package(path):
        raise UserError(f"{what} {path}: inside the installed package ({PACKAGE_DIR}); write outputs elsewhere "
                        "(e.g. runs/ or reports/)")


def _usable_parent(path: Path, what: str) -> None:
    """The nearest existing ancestor of `path` is a writable directory (nothing is created)."""
    a = Path(os.path.abspath(path))
    while not a.exists() and a != a.parent:
        a = a.parent
    if not a.is_dir():
        raise UserError(f"{what} {path}: {a} is a file, not a directory")
    if not os.access(a, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: not writable ({a}: permission denied)")


def output_dir(path, what: str = "--output") -> Path:
    """A directory a command will create or fill: not inside the package, not a file, creatable and writable.
    Nothing is created here (a lock or the first write creates it), so a refused command leaves no trace."""
    p = Path(path)
    not_in_package(p, what)
    if p.exists() and not p.is_dir():
        raise UserError(f"{what} {path}: exists and is not a directory")
    if p.is_dir() and not os.access(p, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: not writable (permission denied)")
    _usable_parent(p, what)
    return p


def output_file(path, what: str = "--output") -> Path:
    p = Path(path)
    not_in_package(p, what)
    if p.is_dir():
        raise UserError(f"{what} {path}: is a directory, expected a file name")
    if p.exists() and not os.access(p, os.W_OK):
        raise UserError(f"{what} {path}: not writable (permission denied)")
    _usable_parent(p.parent, what)
    return p


def utf8_file(path, chunk: int = 1 << 20) -> None:
    """Decode the whole file as UTF-8, streamed; the first bad byte is reported with its line."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 0  # newlines in the blocks already decoded
    try:
        with open(path, "rb") as f:
            while True:
                pending = decoder.getstate()[0]  # an incomplete character carried over from the last block
                block = f.read(chunk)
                try:
                    decoder.decode(block, final=not block)
                except UnicodeDecodeError:
                    data = pending + block
                    try:
                        data.decode("utf-8")
                        start = len(data) - 1
                    except UnicodeDecodeError as e:
                        start = e.start
                    raise UserError(utf8_message(path, data[start], lines + data.count(b"\n", 0, start) + 1)) from None
                if not block:
                    return
                lines += block.count(b"\n")
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e.__class__.__name__})") from None


def input_file(path, what: str | None = None) -> Path:
    """An input file that exists, is a file and is UTF-8 text."""
    p = Path(path)
    label = f"{what}: {path}" if what else str(path)
    if not p.exists():
        raise UserError(f"{label}: file not found")
    if not p.is_file():
        raise UserError(f"{label}: not a file")
    try:
        utf8_file(p)
    except UserError as e:
        raise UserError(f"{what}: {e}" if what else str(e)) from None
    return p


# ---------------------------------------------------------------- task folders
TASK_YAML = re.compile(r".*(\.ya?ml|_yaml)$")  # lm-eval task files, and `include:` templates such as _mc_template_yaml


def task_folder(path, what: str = "--include-path") -> Path:
    """Every YAML file under an lm-eval task folder is UTF-8, parses (lm-eval's `!function` tags accepted as data)
    and has no key twice; every JSON/JSONL data file is UTF-8. lm-eval itself skips a broken file silently."""
    p = Path(path)
    if not p.is_dir():
        raise UserError(f"{what} {path}: not a directory")
    for f in sorted(p.rglob("*")):
        if not f.is_file() or "__pycache__" in f.parts:
            continue
        if TASK_YAML.match(f.name):
            parse_yaml(read_text(f), f, TaskYamlLoader)
        elif f.suffix in (".json", ".jsonl"):
            utf8_file(f)
    return p


# ---------------------------------------------------------------- model directories
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4,
                "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "C64": 8}


def safetensors_header(path: Path) -> dict:
    """{tensor name: {"dtype", "shape", "data_offsets"}} of one safetensors file, checked against the file size:
    a truncated or corrupt file is a UserError naming it."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise UserError(f"{path}: truncated safetensors file ({size} bytes, no header)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise UserError(f"{path}: truncated safetensors file ({size} bytes, header alone needs {n + 8})")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise UserError(f"{path}: corrupt safetensors header (not JSON)") from None
    if not isinstance(header, dict):
        raise UserError(f"{path}: corrupt safetensors header")
    header.pop("__metadata__", None)
    data = size - 8 - n
    need = 0
    for name, t in header.items():
        try:
            start, end = t["data_offsets"]
            numel = math.prod(t["shape"])
            width = _DTYPE_BYTES.get(t["dtype"])
        except (TypeError, KeyError, ValueError):
            raise UserError(f"{path}: corrupt safetensors header (tensor {name})") from None
        if width is not None and end - start != numel * width:
            raise UserError(f"{path}: corrupt safetensors header (tensor {name}: {end - start} bytes for "
                            f"{numel} x {t['dtype']})")
        need = max(need, end)
    if need > data:
        raise UserError(f"{path}: truncated safetensors file ({size} bytes; its tensors need {need + 8 + n})")
    return header


def _expected_tensors(model_path: Path):
    """({name: shape} of the state dict the config implies, from a meta-device model (no memory); the names a file
    may leave out (tied weights, buffers); patterns of names a file may add) -- None for the state dict when
    transformers cannot build the architecture here."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(model_path, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{model_path / 'config.json'}: not a config transformers can read "
                        f"({str(e).splitlines()[0][:160]})") from None
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except Exception:  # noqa: BLE001 -- an architecture we cannot build: fall back to the layer count
        return None, set(), []
    tied = getattr(model, "all_tied_weights_keys", None)
    if tied is None:
        tied = getattr(model, "_tied_weights_keys", None) if getattr(config, "tie_word_embeddings", False) else None
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    params = {k for k, _ in model.named_parameters(remove_duplicate=False)}
    # a missing tied weight or buffer, or a key the architecture says to ignore, is no missing tensor
    ignore_missing = [re.compile(p) for p in getattr(model, "_keys_to_ignore_on_load_missing", None) or []]
    optional = set(tied or ()) | (set(state) - params) | {k for k in state if any(p.search(k) for p in ignore_missing)}
    ignore_unexpected = [re.compile(p) for p in getattr(model, "_keys_to_ignore_on_load_unexpected", None) or []]
    return state, optional, ignore_unexpected


_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def _ranges(nums) -> str:
    nums = sorted(nums)
    return f"{nums[0]}-{nums[-1]}" if len(nums) > 1 else str(nums[0]) if nums else "none"


def model_dir(path, what: str | None = None, require_tokenizer: bool = False, finite_weights: bool = True) -> list[Path]:
    """A local HF model dir that can be loaded as it is: config.json readable, safetensors weights only (pickle is
    refused), every file complete, no missing or unexpected tensor for the config, every weight finite.
    `what` (e.g. "--draft", "recipe.yaml: init:") starts every message. Returns the weight files."""
    try:
        return _model_dir(Path(path), require_tokenizer, finite_weights)
    except UserError as e:
        if what and not str(e).startswith(what):
            raise UserError(f"{what} {e}", e.code) from None
        raise


def model_files(p: Path, require_tokenizer: bool = False) -> list[Path]:
    """The cheap part of `model_dir` (what every load checks, soaes_bench.models.check_model_dir): a directory with
    config.json, safetensors weights (pickle refused) and, when asked, tokenizer files. Returns the weight files."""
    label = str(p)
    if not p.exists():
        raise UserError(f"{label}: model directory not found")
    if not p.is_dir():
        raise UserError(f"{label}: not a directory (pass a Hugging Face model directory)")
    cfg_path = p / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"{label}: no config.json (not a Hugging Face model directory)")
    weights = sorted(p.glob("*.safetensors"))
    if not weights:
        pickles = sorted(f.name for pat in ("*.bin", "*.pt", "*.pth", "*.ckpt") for f in p.glob(pat))
        if pickles:
            raise UserError(f"{label}: no *.safetensors weights, only pickle ({pickles[0]}), which is refused; "
                            "re-save with save_pretrained(..., safe_serialization=True)")
        raise UserError(f"{label}: no *.safetensors weights")
    if require_tokenizer and not any((p / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        raise UserError(f"{label}: no tokenizer files (save the tokenizer next to the model)")
    return weights


def _model_dir(p: Path, require_tokenizer: bool, finite_weights: bool) -> list[Path]:
    weights = model_files(p, require_tokenizer)
    cfg_path = p / "config.json"
    try:
        cfg = json.loads(read_text(cfg_path))
    except json.JSONDecodeError as e:
        raise UserError(f"{cfg_path}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if not isinstance(cfg, dict):
        raise UserError(f"{cfg_path}: expected a JSON object")
    index = p / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(read_text(index)).get("weight_map", {}).values())
        except (json.JSONDecodeError, AttributeError):
            raise UserError(f"{index}: invalid JSON index") from None
        missing = sorted(s for s in shards if not (p / s).is_file())
        if missing:
            raise UserError(f"{index}: names shard {missing[0]}, which is missing")
    shapes: dict[str, tuple] = {}
    for w in weights:
        for name, t in safetensors_header(w).items():
            if name in shapes:
                raise UserError(f"{w}: tensor {name} is also in another shard")
            shapes[name] = tuple(t["shape"])
    _agree(p, cfg, shapes)
    if finite_weights:
        _finite_weights(weights)
    return weights


def _agree(p: Path, cfg: dict, shapes: dict) -> None:
    """config.json and the tensors agree: the layer count, then (when transformers can build the architecture on
    the meta device) every name and shape."""
    n_layers = cfg.get("num_hidden_layers")
    found = {int(m.group(1)) for name in shapes for m in [_LAYER.search(name)] if m}
    if isinstance(n_layers, int) and found and found != set(range(n_layers)):
        lacking = sorted(set(range(n_layers)) - found)
        extra = sorted(found - set(range(n_layers)))
        what = (f"no tensors for layer(s) {_ranges(lacking)} (missing tensors)" if lacking else
                f"tensors for layer(s) {_ranges(extra)} beyond it (unexpected tensors)")
        raise UserError(f"{p}: config.json has num_hidden_layers {n_layers} but the weights hold layers "
                        f"{_ranges(found)}: {what}")
    expected, optional, ignore_unexpected = _expected_tensors(p)
    if expected is None:
        return
    prefix = next((k.split(".", 1)[0] + "." for k in expected if "." in k), "")
    if prefix and not any(k.startswith(prefix) for k in shapes):  # a base model saved without its prefix
        expected = {k.removeprefix(prefix): v for k, v in expected.items()}
        optional = {k.removeprefix(prefix) for k in optional}
    missing = sorted(k for k in expected if k not in shapes and k not in optional)
    unexpected = sorted(k for k in shapes if k not in expected and not any(r.search(k) for r in ignore_unexpected))
    if missing:
        raise UserError(f"{p}: the weights lack {len(missing)} tensor(s) config.json implies "
                        f"(e.g. {missing[0]}); config and weights disagree")
    if unexpected:
        raise UserError(f"{p}: the weights hold {len(unexpected)} tensor(s) config.json does not know "
                        f"(e.g. {unexpected[0]}); config and weights disagree")
    for k, shape in shapes.items():
        if tuple(expected[k]) != shape:
            raise UserError(f"{p}: tensor {k} has shape {list(shape)} but config.json implies "
                            f"{list(expected[k])}")


def _finite_weights(weights: list[Path]) -> None:
    import torch
    from safetensors import SafetensorError, safe_open

    for w in weights:
        try:
            with safe_open(str(w), framework="pt") as f:
                for name in f.keys():  # noqa: SIM118 -- safe_open has no __iter__
                    t = f.get_tensor(name)
                    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                        bad = int((~torch.isfinite(t)).sum())
                        raise UserError(f"{w}: tensor {name} has {bad} non-finite value(s) (NaN or inf); "
                                        "the model is broken (diverged training?)")
        except SafetensorError as e:
            raise UserError(f"{w}: unreadable safetensors file ({e})") from None


def tokenizer_dir(path, what: str = "tokenizer") -> Path:
    p = Path(path)
    if not (p / "tokenizer.json").is_file() and not (p / "tokenizer_config.json").is_file():
        raise UserError(f"{what} {path}: no tokenizer files (tokenizer.json or tokenizer_config.json)")
    return p
