"""Provenance of a profile: the "model" blocks (as in results.json) and the "env" block, including the CPU facts
that decide the profiler's default dtype."""

from __future__ import annotations

import platform
from pathlib import Path


def _state_sha256(model) -> str:
    import hashlib

    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_info(model, path: str | Path | None = None, name: str | None = None) -> dict:
    """The results.json "model" block: weights hash from the safetensors files (from the tensors when in memory)."""
    from soaes_bench.io import sha256_files
    from soaes_bench.paths import TOKENIZER_DIR, display_path

    p = Path(path) if path is not None else None
    shards = sorted(p.glob("*.safetensors")) if p is not None else []
    tok_dir = p if p is not None and (p / "tokenizer.json").is_file() else TOKENIZER_DIR
    tok_files = [f for f in (tok_dir / "tokenizer.json", tok_dir / "tokenizer_config.json") if f.is_file()]
    cfg = model.config
    return {"name": name or (p.name if p is not None else None), "path": display_path(p) if p is not None else None,
            "weights_sha256": sha256_files(shards) if shards else _state_sha256(model),
            "tokenizer_sha256": sha256_files(tok_files) if tok_files and (p is not None) else None,
            "n_params": sum(x.numel() for x in {id(x): x for x in model.parameters()}.values()),
            "layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size}


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


def env_info(device, dtype=None) -> dict:
    import torch
    import transformers

    from soaes_bench import __version__

    dev = torch.device(device)
    name = (torch.cuda.get_device_name(dev) if dev.type == "cuda" else
            cpu_name())
    return {"soaes_bench": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "device": dev.type, "device_name": name,
            "threads": torch.get_num_threads(), "dtype": str(dtype).removeprefix("torch.") if dtype else None}
