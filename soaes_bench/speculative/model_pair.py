"""Loading a target/draft pair, and the random models used by tests and by the timing sanity checks.

`truncated_copy` keeps the target's embeddings, first layers, final norm and (tied) head: a draft that agrees with
the target on part of the tokens without any training, so timing checks see a nonzero acceptance rate.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from soaes_bench.errors import UserError
from soaes_bench.models import load_model, load_tokenizer
from soaes_bench.records.provenance import cpu_has_bf16


def make_qwen2(vocab_size: int, layers: int, hidden: int, heads: int = 2, kv_heads: int = 1,
               intermediate: int | None = None, seed: int = 0, eos_token_id: int | list[int] = 0,
               init_range: float = 0.02, max_position: int = 2048):
    """A random float32 Qwen2ForCausalLM with tied embeddings (same seed, same weights)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    eos = eos_token_id if isinstance(eos_token_id, int) else eos_token_id[0]
    config = Qwen2Config(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv_heads, intermediate_size=intermediate or int(hidden * 8 / 3) // 32 * 32 or 32,
        max_position_embeddings=max_position, tie_word_embeddings=True, use_sliding_window=False,
        initializer_range=init_range, eos_token_id=eos, pad_token_id=eos, bos_token_id=eos,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).float().eval()
    model.generation_config.eos_token_id = eos_token_id
    model.generation_config.pad_token_id = eos
    return model


def truncated_copy(model, n_layers: int = 1):
    """Deep copy of `model` keeping only its first n_layers decoder layers (embeddings, norm and head kept). For
    Llama-style decoders (`model.model.layers`: Qwen2, Llama, Mistral, ...); tests and benchmarks only."""
    import torch

    if not 1 <= n_layers <= model.config.num_hidden_layers:
        raise ValueError(f"n_layers must be in 1..{model.config.num_hidden_layers}, got {n_layers}")
    small = copy.deepcopy(model)
    small.model.layers = torch.nn.ModuleList(list(small.model.layers)[:n_layers])
    small.config.num_hidden_layers = n_layers
    if getattr(small.config, "layer_types", None):
        small.config.layer_types = small.config.layer_types[:n_layers]
    return small.eval()


DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_dtype(name: str, device: str = "cpu") -> str:
    """`auto` -> bfloat16 where the device computes it natively (the shipped weights are stored in bf16), else
    float32. Decoding speed depends on it: on CPU a float32 target streams twice the bytes per token, and a
    bf16 (gamma+1)-token verification costs about 1.1 single steps against about 1.4 in float32. float16 is for
    GPUs only (on a CPU it is emulated; a model trained in bf16 may also overflow in fp16: check `lossless`)."""
    import torch

    if name not in DTYPES:
        raise UserError(f"--dtype: must be one of {', '.join(DTYPES)}, got {name!r}")
    if name == "float16" and device != "cuda":
        raise UserError("--dtype float16: GPU only (use --device cuda, or bfloat16 / float32 on a CPU)")
    if name != "auto":
        return name
    if device == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if cpu_has_bf16() else "float32"


def _config_vocab_size(model_dir: Path) -> int | None:
    """vocab_size from config.json (or its text_config), without loading anything else; None when absent."""
    try:
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # validate.model_dir says what is wrong with the dir
    if not isinstance(cfg, dict):
        return None
    for block in (cfg, cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else {}):
        if isinstance(block.get("vocab_size"), int):
            return block["vocab_size"]
    return None


def _pair_tokenizer(model_dir):
    try:
        return load_tokenizer(model_dir)
    except UserError:
        return load_tokenizer(None)


def check_pair_dirs(target_dir: str | Path, draft_dir: str | Path) -> None:
    """Refuse an incompatible pair before any weight is read: config.json vocab_size and the tokenizer files only
    (each model dir's tokenizer, else the shared one, as load_pair loads them). One-line UserError."""
    from soaes_bench.speculative.decode import check_vocabularies

    tv, dv = _config_vocab_size(Path(target_dir)), _config_vocab_size(Path(draft_dir))
    if tv is None or dv is None:
        return
    try:
        toks = _pair_tokenizer(target_dir), _pair_tokenizer(draft_dir)
    except Exception:  # noqa: BLE001 -- e.g. a config.json transformers refuses: validate.model_dir names it next
        return
    check_vocabularies(tv, dv, *toks)


def load_pair(target_dir: str | Path, draft_dir: str | Path, device: str = "cpu", dtype: str = "float32",
              attn_implementation: str = "eager"):
    """(target, draft, target_tokenizer, draft_tokenizer) from two local HF dirs, safetensors only; both models in
    `dtype` (see resolve_dtype for "auto").

    Eager attention by default: with it, a (gamma+1)-token verification gives the same logits, bit for bit, as
    gamma+1 single-token steps on the CPU (checked in bf16 and used by the losslessness tests). PyTorch's SDPA
    kernel takes another path for a multi-token query; in bf16 its logits then differ by up to 0.03, enough to
    flip near-tied argmaxes (3 of 160 greedy generations of the embedded pair diverged).

    Each tokenizer comes from its model dir, falling back to the shared one (soaes_bench/assets/tokenizer).
    """
    dtype = resolve_dtype(dtype, device)
    models, toks = [], []
    for path in (target_dir, draft_dir):
        models.append(load_model(path, dtype, attn_implementation).to(device).eval())
        toks.append(_pair_tokenizer(path))
    return models[0], models[1], toks[0], toks[1]


def save_pair(target, draft, tokenizer, out_dir: str | Path) -> tuple[Path, Path]:
    """Save a pair as out_dir/target and out_dir/draft (float32 safetensors + tokenizer), for benchmarks and tests."""
    out = Path(out_dir)
    paths = []
    for name, model in (("target", target), ("draft", draft)):
        p = out / name
        model.save_pretrained(p, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(p)
        paths.append(p)
    return paths[0], paths[1]
