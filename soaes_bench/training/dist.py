"""Process helpers for `accelerate launch`: the one Accelerator, and main-process-only work shared with all ranks.

Rule used by every phase: training runs on all processes through loop.train; evaluation, gates, teacher-cache
building and file writes run on the main process only; the others wait, and results they need come back through
`broadcast_json` (so every rank takes the same branches and exits with the same code).
"""

from __future__ import annotations

import json
import os
from typing import Callable

from soaes_bench.errors import UserError

# Collective timeout: the pipeline evaluates on the main process while the others wait in a barrier, and lm-eval
# of a phase can take longer than torch's defaults (30 min gloo, 10 min NCCL).
DIST_TIMEOUT_MIN = 180


def make_accelerator():
    import datetime

    import torch
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    # What `accelerate launch` asked for, checked before the Accelerator exists: on a machine without CUDA accelerate
    # drops FSDP silently (and would run plain DDP), and DeepSpeed fails to import when it is not installed.
    for kind, env in (("FSDP", "ACCELERATE_USE_FSDP"), ("DEEPSPEED", "ACCELERATE_USE_DEEPSPEED")):
        if os.environ.get(env, "false").lower() in ("true", "1"):
            _refuse(kind)
    # bf16 autocast is off on CPU: fp32 is both faster and exact there for models this small.
    timeout = InitProcessGroupKwargs(timeout=datetime.timedelta(minutes=DIST_TIMEOUT_MIN))
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="no", kwargs_handlers=[timeout])
    kind = getattr(accelerator.distributed_type, "value", str(accelerator.distributed_type))
    if kind in ("FSDP", "DEEPSPEED"):
        _refuse(kind)
    return accelerator


def _refuse(kind: str):
    """FSDP and DeepSpeed shard what the loop's checkpoints save whole (docs/pipeline.md, "FSDP and DeepSpeed")."""
    raise UserError(f"accelerate config: distributed_type {kind} is not supported by the training loop yet "
                    "(its checkpoints hold the full model + AdamW state); use ddp_2gpu.yaml or cpu2.yaml")


def broadcast_json(obj, accelerator):
    """`obj` as the main process has it, on every process (sent as JSON bytes, no pickle).

    Always returns the JSON round trip (lists for tuples, string keys), so 1 and N processes see the same values.
    Also a synchronisation point: every process must call it.
    """
    import torch
    from accelerate.utils import broadcast

    if accelerator.num_processes == 1:
        return json.loads(json.dumps(obj))
    data = json.dumps(obj).encode("utf-8") if accelerator.is_main_process else b""
    n = int(broadcast(torch.tensor([len(data)], dtype=torch.long, device=accelerator.device), from_process=0)[0])
    if accelerator.is_main_process:
        buf = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(accelerator.device)
    else:
        buf = torch.zeros(n, dtype=torch.uint8, device=accelerator.device)
    buf = broadcast(buf, from_process=0)
    return json.loads(buf.cpu().numpy().tobytes().decode("utf-8"))


def on_main(accelerator, fn: Callable):
    """fn() on the main process only (evaluation, gates, file writes); every process gets its JSON result."""
    return broadcast_json(fn() if accelerator.is_main_process else None, accelerator)


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
