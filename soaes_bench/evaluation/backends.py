"""Which engine runs the model under lm-eval: `hf` (transformers through lm-eval's HFLM, the default) or `vllm`
(lm-eval's own vLLM model, `lm_eval.models.vllm_causallms`, model name "vllm"), and the data-parallel set-up of
the hf backend under `accelerate launch`.

    soaes-bench run --backend vllm --model DIR --tensor-parallel-size 2 --gpu-memory-utilization 0.8
    accelerate launch --config_file training/accelerate/cpu2.yaml -m soaes_bench run --model DIR --tasks ...

results.json records the backend and its settings in a `backend` block (records/results.py `Backend`); `compare`
refuses to pair runs of different backends unless --force (a file without the block ran on hf). docs/backends.md
says how to install vLLM (a separate environment: vLLM pins other torch/transformers versions than ours).

vLLM cannot run on this project's CPU machines, so its code path is kept to one mapping (`vllm_model_args`, unit
tested against lm-eval's VLLM signature) and one constructor call.
"""

from __future__ import annotations

import os
from importlib.util import find_spec

from soaes_bench.errors import UserError

BACKENDS = ("hf", "vllm")
VLLM_DEFAULTS = {"tensor_parallel_size": 1, "data_parallel_size": 1, "gpu_memory_utilization": 0.9,
                 "max_model_len": None}
VLLM_INSTALL = ("vLLM is not installed; install vllm (e.g. vllm==0.34.0) in a separate environment, since "
                "it requires transformers<5.20 and soaes-bench pins 5.24: see docs/backends.md")


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise UserError(f"--backend: must be one of {', '.join(BACKENDS)}, got {name!r}")
    return name


def vllm_installed() -> bool:
    return find_spec("vllm") is not None


def require_vllm() -> None:
    """One-line UserError (exit 2) when vLLM cannot be imported: checked before any work."""
    if not vllm_installed():
        raise UserError(f"--backend vllm: {VLLM_INSTALL}")


def vllm_settings(tensor_parallel_size=None, data_parallel_size=None, gpu_memory_utilization=None,
                  max_model_len=None) -> dict:
    """The vLLM flags with their defaults filled in, checked: positive integers, a utilization in (0, 1]."""
    given = {"tensor_parallel_size": tensor_parallel_size, "data_parallel_size": data_parallel_size,
             "gpu_memory_utilization": gpu_memory_utilization, "max_model_len": max_model_len}
    out = {k: VLLM_DEFAULTS[k] if v is None else v for k, v in given.items()}
    for key in ("tensor_parallel_size", "data_parallel_size", "max_model_len"):
        v = out[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise UserError(f"--{key.replace('_', '-')}: must be a positive integer, got {v!r}")
    u = out["gpu_memory_utilization"]
    if isinstance(u, bool) or not isinstance(u, (int, float)) or not 0 < u <= 1:
        raise UserError(f"--gpu-memory-utilization: must be a fraction in (0, 1], got {u!r}")
    out["gpu_memory_utilization"] = float(u)
    return out


def check_hf_flags(**given) -> None:
    """The vLLM-only flags are refused with the hf backend (they would be silently ignored otherwise)."""
    for key, v in given.items():
        if v is not None:
            raise UserError(f"--{key.replace('_', '-')}: applies to --backend vllm only")


def vllm_model_args(model_dir, *, seed: int, tensor_parallel_size: int = 1, data_parallel_size: int = 1,
                    gpu_memory_utilization: float = 0.9, max_model_len: int | None = None,
                    dtype: str = "auto") -> dict:
    """Keyword arguments of lm-eval's VLLM (lm_eval/models/vllm_causallms.py) for a local model directory.

    - batch_size "auto": every request goes to the engine in one call and vLLM schedules them (an integer would
      make lm-eval cut the requests into chunks and call the engine once per chunk);
    - dtype "auto": the model's config.json dtype (the shipped models say float32, as the hf backend computes);
    - gpu_memory_utilization is not a VLLM parameter: it travels in **kwargs into `vllm.LLM(...)`;
    - no `device`: VLLM ignores it (it uses CUDA_VISIBLE_DEVICES); data_parallel_size > 1 needs `ray`.
    """
    args = {"pretrained": str(model_dir), "dtype": dtype, "tensor_parallel_size": int(tensor_parallel_size),
            "data_parallel_size": int(data_parallel_size), "gpu_memory_utilization": float(gpu_memory_utilization),
            "batch_size": "auto", "seed": int(seed), "trust_remote_code": False}
    if max_model_len is not None:
        args["max_model_len"] = int(max_model_len)
    return args


def vllm_lm(model_dir, *, seed: int, **settings):
    """lm-eval's VLLM for `model_dir` (imports vllm: call `require_vllm` first)."""
    require_vllm()
    from lm_eval.models.vllm_causallms import VLLM

    return VLLM(**vllm_model_args(model_dir, seed=seed, **settings))


def vllm_block(settings: dict, dtype: str = "auto") -> dict:
    """results.json `backend` of a vLLM run."""
    from importlib.metadata import version

    return {"name": "vllm", "version": version("vllm") if vllm_installed() else None, "dtype": dtype,
            "batch_size": "auto", **settings}


def hf_block(batch_size: int, gen_batch_size: int, processes: int = 1, dtype: str = "float32") -> dict:
    """results.json `backend` of an hf run (`processes` > 1: data parallel under `accelerate launch`)."""
    return {"name": "hf", "dtype": dtype, "batch_size": batch_size, "gen_batch_size": gen_batch_size,
            "data_parallel_size": processes}


# --- data parallel (hf) ------------------------------------------------------------------------------------
def launched_processes() -> int:
    """Processes of this launch (`accelerate launch` / torchrun set WORLD_SIZE); 1 when started directly."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))
    except ValueError:
        return 1


def is_main_process() -> bool:
    """RANK 0 (or no launcher): the one process that takes the lock, writes files and prints (lock.py's rule)."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def data_parallel_accelerator(device: str):
    """The Accelerator of a data-parallel evaluation: gloo on CPU, NCCL on CUDA (`cuda:<local rank>`).

    lm-eval's HFLM only sets up data parallelism itself for a model it loads from a path onto several GPUs; here
    the model is loaded by us (validated, float32), so `attach_data_parallel` gives the HFLM its rank instead.
    """
    import datetime

    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    # rank 0 runs lm-eval's post-processing while the others wait: generous collective timeout (gloo's is 30 min)
    timeout = InitProcessGroupKwargs(timeout=datetime.timedelta(hours=6))
    return Accelerator(cpu=device == "cpu", mixed_precision="no", kwargs_handlers=[timeout])


def attach_data_parallel(lm, accelerator):
    """Make an HFLM built on an in-memory model one rank of `accelerator`'s processes: lm-eval's evaluator then
    gives each rank every world_size-th document, gathers the per-document results on rank 0 and returns the
    results there only (None on the others). The same attributes HFLM sets when it runs data parallel itself."""
    lm.accelerator = accelerator
    lm._rank = accelerator.process_index
    lm._world_size = accelerator.num_processes
    lm._device = accelerator.device
    return lm
