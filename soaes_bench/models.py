"""Named Qwen2 sizes, and saving/loading model directories the one way every module uses.

Sizes follow docs/DESIGN.md ("Models"):
- "target" 8 x 384 (17.2M params with the 12k vocab): the smallest target that leaves speculative decoding real
  headroom on 2 CPU cores (~5 ms per decode step).
- "draft" 1 x 128 (1.7M): small models are mostly per-forward and per-layer overhead, so one layer is the cheapest
  draft (~0.65 ms/step, cost ratio c ~ 0.13 against the target); predicted speedup 1.43x at acceptance 0.7.
- "draft2" 2 x 192 (3.2M): a stronger but ~1.7x slower draft, for the draft-size ablation.
- "micro" 2 x 64: tests only.
Vocabulary size and special-token ids always come from the tokenizer, so every model shares one vocabulary.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from soaes_bench import validate
from soaes_bench.errors import UserError
from soaes_bench.io import write_json
from soaes_bench.paths import TOKENIZER_DIR

# layers, hidden, attention heads, KV heads, MLP intermediate
SIZES: dict[str, dict[str, int]] = {
    "target": dict(num_hidden_layers=8, hidden_size=384, num_attention_heads=6, num_key_value_heads=2,
                   intermediate_size=1024),
    "draft": dict(num_hidden_layers=1, hidden_size=128, num_attention_heads=2, num_key_value_heads=1,
                  intermediate_size=352),
    "draft2": dict(num_hidden_layers=2, hidden_size=192, num_attention_heads=3, num_key_value_heads=1,
                   intermediate_size=512),
    "micro": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=2, num_key_value_heads=1,
                  intermediate_size=128),
}

CHAT_END = "<|im_end|>"


def check_size(name: str) -> str | None:
    """Field check for recipes: an error string for an unknown size name."""
    return None if name in SIZES else f"unknown model size {name!r}; choose one of {', '.join(SIZES)}"


def build_config(size: str, tokenizer, max_position: int = 2048, rope_theta: float = 10000.0):
    """Qwen2Config for a named size; vocab and eos/pad/bos ids taken from `tokenizer`."""
    from transformers import Qwen2Config

    if size not in SIZES:
        raise UserError(f"model size: {check_size(size)}")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise UserError("tokenizer: has no eos token (expected <|endoftext|>)")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    return Qwen2Config(
        vocab_size=len(tokenizer),
        max_position_embeddings=max_position,
        rope_parameters={"rope_type": "default", "rope_theta": float(rope_theta)},
        tie_word_embeddings=True,
        rms_norm_eps=1e-6,
        initializer_range=0.02,
        use_sliding_window=False,
        attention_dropout=0.0,
        eos_token_id=eos,
        pad_token_id=pad,
        bos_token_id=bos,
        **SIZES[size],
    )


def new_model(size: str, tokenizer, seed: int, max_position: int = 2048):
    """A freshly initialised float32 Qwen2ForCausalLM; the same seed gives the same weights."""
    import torch
    from transformers import Qwen2ForCausalLM

    config = build_config(size, tokenizer, max_position=max_position)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    return model.float()


def n_params(model) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _generation_eos(tokenizer) -> list[int]:
    """Stop on <|endoftext|> and, for chat models, on <|im_end|>."""
    ids = [tokenizer.eos_token_id]
    end = tokenizer.convert_tokens_to_ids(CHAT_END) if CHAT_END in tokenizer.get_vocab() else None
    if end is not None and end not in ids:
        ids.append(end)
    return ids


def save_model(model, tokenizer, out_dir: str | os.PathLike, dtype: str = "bfloat16",
               extra_json: dict | None = None) -> Path:
    """Write an HF model dir (safetensors + config + generation config + tokenizer) atomically.

    Shipped weights are bfloat16 to halve the size (DESIGN.md); `load_model` reads them back as float32. The dir is
    written next to its final place and renamed, so a crash never leaves a half-written model behind.
    extra_json: {file name: object} written into the dir too (e.g. training provenance).
    """
    import copy

    import torch

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a shipped model dir must be readable by everyone
        m = copy.deepcopy(model).to(getattr(torch, dtype))
        m.generation_config.eos_token_id = _generation_eos(tokenizer)
        m.generation_config.pad_token_id = model.config.pad_token_id
        m.generation_config.bos_token_id = model.config.bos_token_id
        m.save_pretrained(tmp, safe_serialization=True)
        _set_compute_dtype(tmp / "config.json", "float32")
        tokenizer.save_pretrained(tmp)
        for name, obj in (extra_json or {}).items():
            write_json(tmp / name, obj)
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _set_compute_dtype(config_path: Path, dtype: str) -> None:
    """Storage stays bfloat16, but config.json says float32: any loader using dtype="auto" (lm-eval's HFLM, plain
    from_pretrained) then computes in float32, so plain lm-eval gives the same numbers as `soaes-bench run`."""
    cfg = json.loads(config_path.read_text(encoding="utf-8"))
    cfg["dtype"] = dtype
    write_json(config_path, cfg)


def check_model_dir(path: str | os.PathLike, require_tokenizer: bool = False) -> list[Path]:
    """Refuse anything but a local HF model dir with config.json and safetensors weights (pickle is never loaded).

    Returns the weight files (hashed into results provenance). `require_tokenizer` for dirs that are evaluated as-is.
    The full check (config and tensors agree, finite weights) is soaes_bench.validate.model_dir, run by the commands
    before any work."""
    return validate.model_files(Path(path), require_tokenizer)


def load_model(path: str | os.PathLike, dtype: str = "float32", attn_implementation: str | None = None):
    """Load a Qwen2 (or any causal LM) dir (float32 unless asked), local files only, no remote code, safetensors
    only; attn_implementation None keeps transformers' default (SDPA)."""
    import torch
    from transformers import AutoModelForCausalLM

    p = Path(path)
    check_model_dir(p)
    model = AutoModelForCausalLM.from_pretrained(
        p, dtype=getattr(torch, dtype), trust_remote_code=False, use_safetensors=True, local_files_only=True,
        attn_implementation=attn_implementation,
    )
    return model


def load_tokenizer(path: str | os.PathLike | None = None):
    """The shared tokenizer (default soaes_bench/assets/tokenizer) or the one saved inside a model dir."""
    from transformers import AutoTokenizer

    p = Path(path) if path is not None else TOKENIZER_DIR
    if not (p / "tokenizer.json").is_file() and not (p / "tokenizer_config.json").is_file():
        raise UserError(f"{p}: no tokenizer files (run `soaes-bench data build` to create the shared tokenizer)")
    return AutoTokenizer.from_pretrained(p, trust_remote_code=False, local_files_only=True)


def load_for_eval(model_dir: str | os.PathLike):
    """(model, tokenizer) of a model directory to evaluate as it is: `load_model` (float32) and the tokenizer saved
    inside it. The record's `model` block comes from soaes_bench.records.provenance.model_block."""
    model_dir = Path(model_dir)
    check_model_dir(model_dir, require_tokenizer=True)
    try:
        return load_model(model_dir), load_tokenizer(model_dir)
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{model_dir}: cannot load model ({str(e).splitlines()[0]})") from None


def check_same_vocab(tok_a, tok_b, what: str = "draft vs target") -> None:
    """Distillation and speculative decoding need identical vocabularies (same ids for the same strings)."""
    if len(tok_a) != len(tok_b) or tok_a.get_vocab() != tok_b.get_vocab():
        raise UserError(f"{what}: tokenizers differ (vocab {len(tok_a)} vs {len(tok_b)}); both must use the shared tokenizer")
