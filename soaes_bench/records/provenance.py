"""Provenance blocks of every record: which model and tokenizer were measured, with which software on which machine.

One definition each, used by `soaes-bench run` (results.json "model", "env") and the profiler (profile.json
"model", "draft", "env"), so one model dir gets the same hashes in both:

- weights_sha256: `io.sha256_files` over the model dir's *.safetensors (each shard's name and content, in name
  order); null for a model without a directory (in memory, content-free).
- tokenizer_sha256: `io.sha256_files` over the TOKENIZER_FILES present in the folder the tokenizer loads from: the
  model dir when it holds tokenizer files, else the shared soaes_bench/assets/tokenizer (the fallback of
  `soaes_bench.models.load_tokenizer`). Not tokenizer.json alone: the chat template (chat_template.jinja or
  tokenizer_config.json) and the special tokens change every chat-templated prompt, so two tokenizers that differ
  there must not share a hash.
- path: `paths.display_path` (repository-relative inside a checkout, so reports carry no machine's home folder).
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import TypedDict

from soaes_bench.io import sha256_files
from soaes_bench.paths import TOKENIZER_DIR, display_path

# what transformers' AutoTokenizer reads from a folder (those present are hashed)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.jinja", "chat_template.json", "vocab.json", "merges.txt")


class ModelBlock(TypedDict):
    name: str
    path: str | None
    weights_sha256: str | None
    tokenizer_sha256: str | None
    n_params: int
    layers: int | None
    hidden: int | None


class EnvBlock(TypedDict, total=False):
    soaes_bench: str
    lm_eval: str | None
    torch: str
    transformers: str
    python: str
    device: str          # "cpu" or "cuda"
    device_name: str     # CPU model name or GPU name
    threads: int | None  # torch CPU threads
    chat_template: bool  # results.json: prompts went through the tokenizer's chat template
    dtype: str | None    # profile.json: the dtype the models ran in
    cuda: str            # CUDA only: the CUDA version torch was built with (torch.version.cuda)
    gpu_count: int       # CUDA only: visible GPUs
    attn_implementation: str | None  # profile.json: the attention kernel ("eager", "sdpa", ...)
    timer: str           # profile.json: "perf_counter" (CPU) or "cuda_events"


def tokenizer_dir(model_dir: str | Path) -> Path:
    """The folder a model's tokenizer loads from: the model dir when it has tokenizer files, else the shared one."""
    p = Path(model_dir)
    return p if (p / "tokenizer.json").is_file() or (p / "tokenizer_config.json").is_file() else TOKENIZER_DIR


def tokenizer_sha256(model_dir: str | Path) -> str | None:
    files = [f for f in (tokenizer_dir(model_dir) / name for name in TOKENIZER_FILES) if f.is_file()]
    return sha256_files(files) if files else None


def weights_sha256(model_dir: str | Path) -> str | None:
    shards = sorted(Path(model_dir).glob("*.safetensors"))
    return sha256_files(shards) if shards else None


def model_block(model, model_dir: str | Path | None = None, name: str | None = None) -> ModelBlock:
    """The "model" block of a record. `model`: a loaded HF model, or None for a content-free one (no parameters);
    `name` defaults to the model dir's folder name."""
    p = Path(model_dir) if model_dir is not None else None
    cfg = getattr(model, "config", None)
    n_params = sum(x.numel() for x in model.parameters()) if model is not None else 0  # tied weights counted once
    return {"name": name or (p.resolve().name if p is not None else type(model).__name__),
            "path": display_path(p) if p is not None else None,
            "weights_sha256": weights_sha256(p) if p is not None else None,
            "tokenizer_sha256": tokenizer_sha256(p) if p is not None else None,
            "n_params": int(n_params),
            "layers": _config_int(cfg, ("num_hidden_layers", "n_layer", "num_layers")),
            "hidden": _config_int(cfg, ("hidden_size", "n_embd", "d_model"))}


def _config_int(cfg, names) -> int | None:
    """The first of `names` set in a config (its text part for a multimodal one): architectures name fields
    differently (GPT-2 n_layer / n_embd, T5 num_layers / d_model)."""
    if cfg is not None and hasattr(cfg, "get_text_config"):
        cfg = cfg.get_text_config()
    return next((getattr(cfg, n) for n in names if isinstance(getattr(cfg, n, None), int)), None)


def env_block(device="cpu", **extra) -> EnvBlock:
    """The "env" block: versions, device and threads, plus what the record adds (chat_template, dtype, ...)."""
    from importlib.metadata import PackageNotFoundError, version

    import torch
    import transformers

    from soaes_bench import __version__

    try:
        lm_eval = version("lm_eval")
    except PackageNotFoundError:
        lm_eval = None
    dev = torch.device(device)
    gpu = {"cuda": torch.version.cuda, "gpu_count": torch.cuda.device_count()} if dev.type == "cuda" else {}
    return {"soaes_bench": __version__, "lm_eval": lm_eval, "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version(), "device": dev.type,
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name(),
            "threads": torch.get_num_threads(), **gpu, **extra}


def _cpuinfo(key: str) -> str | None:
    """The value of the first `key : value` line of /proc/cpuinfo (Linux), None elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what platform knows), as profiles and benchmarks name it."""
    return _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown CPU"


def cpu_has_bf16() -> bool:
    """True when the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    return bool({"avx512_bf16", "amx_bf16"} & set((_cpuinfo("flags") or "").split()))
