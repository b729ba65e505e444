"""The one training loop (accelerate): every phase calls `train` with its own data, loss and schedule.

    accelerate launch --config_file training/accelerate/cpu2.yaml -m soaes_bench train base --recipe training/recipes/micro.yaml

What it guarantees
- Hardware-independent maths: `batch_size` is the GLOBAL number of sequences per optimizer step; it is split into
  `micro_batch` sequences per process per forward, and gradient accumulation makes up the rest. The same recipe gives
  the same optimizer steps (up to float summation order) on 1 process or under `accelerate launch --num_processes 2`.
- Exact token weighting: the loss of a step is the sum of per-token losses over the whole global batch divided by the
  number of counted tokens in it (each process can count them, because every process knows the whole data stream).
- Deterministic data: step s reads stream positions [s * batch_size, (s + 1) * batch_size); position p is item
  perm_e[p mod n] of epoch e = p // n, perm_e a seeded permutation (with `group_by_length`, sorted by length in
  chunks of batches; see DataStream). The step number alone fixes the data position.
- Resume: `<out>/checkpoint/` holds model + AdamW state (safetensors, no pickle), RNG state and the step; it is
  written to a temp dir and renamed, so a kill at any moment leaves the previous checkpoint intact. Resuming gives
  the same final weights as an uninterrupted run (tests/test_training_loop.py checks bit-equality).
- Divergence: a non-finite loss or gradient norm stops training at once (TrainingDiverged, exit code 1), before
  that optimizer step and before any checkpoint or model is written: the last checkpoint stays resumable.
- Schedule: linear warm-up then cosine decay to `min_lr_ratio * lr`, fresh for each call (each phase).
- Distributed types: one process, several CPU processes (gloo) and multi-GPU DDP. FSDP and DeepSpeed are refused
  with a clear error: they shard parameters or optimizer state, and the checkpoints here are single safetensors
  files of the full model + AdamW state (training/accelerate/README.md says what is missing).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

from soaes_bench.config import fraction, non_negative, positive
from soaes_bench.defaults import SEED
from soaes_bench.errors import UserError
from soaes_bench.io import write_json
from soaes_bench.training.dist import make_accelerator, to_device  # noqa: F401 (make_accelerator re-exported)


@dataclass
class TrainArgs:
    """Optimisation settings of one phase (recipe block `train:`)."""

    batch_size: int = field(default=8, metadata={"help": "sequences per optimizer step, all processes together", "check": positive})
    micro_batch: int = field(default=8, metadata={"help": "max sequences per forward per process (memory knob)", "check": positive})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate", "check": positive})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "final lr as a fraction of lr (cosine floor)", "check": fraction})
    warmup_steps: int = field(default=50, metadata={"help": "linear warm-up steps", "check": non_negative})
    max_steps: int | None = field(default=None, metadata={"help": "optimizer steps (or give max_tokens)", "check": positive})
    max_tokens: int | None = field(default=None, metadata={"help": "token budget, converted to steps", "check": positive})
    max_minutes: float | None = field(default=None, metadata={"help": "wall-clock cap; checkpoints and stops", "check": positive})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW decay on matrices (not biases/norms)", "check": non_negative})
    beta1: float = field(default=0.9, metadata={"check": fraction})
    beta2: float = field(default=0.95, metadata={"check": fraction})
    grad_clip: float = field(default=1.0, metadata={"help": "max global grad norm; 0 = off", "check": non_negative})
    group_by_length: int = field(default=0, metadata={
        "help": "sort chunks of this many batches by length, so padded batches pad little (0 = random batches)",
        "check": non_negative})
    checkpoint_every: int = field(default=100, metadata={"help": "steps between checkpoints", "check": positive})
    log_every: int = field(default=10, metadata={"help": "steps between log lines", "check": positive})
    seed: int = SEED

    def __post_init__(self):
        if (self.max_steps is None) == (self.max_tokens is None):
            raise ValueError("give exactly one of max_steps and max_tokens")


def lr_at(step: int, total: int, peak: float, warmup: int, min_ratio: float) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warm-up to `peak`, cosine to `min_ratio * peak`."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def resolve_steps(args: TrainArgs, tokens_per_sequence: float) -> int:
    """max_steps, or the steps that `max_tokens` buys at `batch_size` sequences of `tokens_per_sequence` tokens."""
    if args.max_steps is not None:
        return args.max_steps
    return max(1, math.ceil(args.max_tokens / (args.batch_size * tokens_per_sequence)))


class DataStream:
    """Which dataset item fills each stream position (module docstring). Epoch e is a seeded permutation; with
    `group` > 0, each run of `group * batch` items of it is sorted by length and cut into batches whose order is
    shuffled again (HF Trainer's group_by_length): a padded batch then holds examples of similar length, so it pads
    little, while the items of each chunk and the order of batches stay random. group = 0 keeps the plain
    permutation (the generator draws it first either way, so grouping changes nothing else)."""

    def __init__(self, n: int, seed: int, lengths=None, batch: int = 1, group: int = 0):
        if group and (lengths is None or len(lengths) != n):
            raise ValueError("grouping by length needs one length per item")
        self.n, self.seed, self.lengths, self.batch, self.group = n, seed, lengths, batch, group
        self._cache: dict[int, list[int]] = {}

    def epoch(self, e: int) -> list[int]:
        import torch

        if e not in self._cache:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + e)
            order = torch.randperm(self.n, generator=g).tolist()
            if self.group > 0:
                order = self._grouped(order, g)
            self._cache = {k: v for k, v in self._cache.items() if k == e - 1}  # a step spans at most 2 epochs
            self._cache[e] = order
        return self._cache[e]

    def _grouped(self, order: list[int], g) -> list[int]:
        import torch

        out, size, b = [], self.group * self.batch, self.batch
        for lo in range(0, len(order), size):
            chunk = sorted(order[lo:lo + size], key=lambda i: -self.lengths[i])  # stable: ties keep the seeded order
            batches = [chunk[j:j + b] for j in range(0, len(chunk), b)]
            out.extend(i for k in torch.randperm(len(batches), generator=g).tolist() for i in batches[k])
        return out

    def indices(self, start: int, count: int) -> list[int]:
        """Dataset indices at stream positions [start, start + count)."""
        return [self.epoch(p // self.n)[p % self.n] for p in range(start, start + count)]


def stream_indices(start: int, count: int, n: int, seed: int) -> list[int]:
    """Dataset indices at stream positions [start, start + count) of the ungrouped stream."""
    return DataStream(n, seed).indices(start, count)


def count_label_tokens(batch: dict) -> int:
    """Tokens that contribute to a next-token loss: labels[:, 1:] != -100."""
    return int((batch["labels"][:, 1:] != -100).sum())


def count_input_tokens(batch: dict) -> int:
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())


def lm_loss(model, batch: dict):
    """Default loss: summed next-token cross-entropy over labelled tokens. Returns (sum, n_tokens)."""
    from soaes_bench.training.losses import causal_lm_loss

    out = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"), use_cache=False)
    return causal_lm_loss(out.logits, batch["labels"], reduction="sum"), count_label_tokens(batch)


class TrainingDiverged(UserError):
    """A non-finite loss or gradient norm: training stops before that optimizer step (exit code 1, not 2: the input
    was valid, the optimisation failed). Nothing is saved; the last checkpoint stays as it was."""

    def __init__(self, message: str):
        super().__init__(message, code=1)


def _diverged(desc: str, step: int, loss: float, grad_norm: float, out: Path) -> TrainingDiverged:
    ckpt = find_checkpoint(out)
    kept = "no checkpoint was written yet"
    if ckpt is not None:
        saved = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))["step"]
        kept = f"the checkpoint of step {saved} ({ckpt}) is intact and resumable"
    return TrainingDiverged(f"{desc}: training diverged at step {step}: loss {loss}, gradient norm {grad_norm}; "
                            f"stopped before that update, no model saved; {kept} (lower train.lr or raise "
                            "warmup_steps)")


@dataclass
class TrainResult:
    model: object
    steps: int
    total_steps: int
    tokens: int
    stopped_by: str  # "done", "time", "until_step"
    last_loss: float | None
    log: list[dict]


# ---------------------------------------------------------------- checkpoint (safetensors + JSON, atomic dir rename)
def _save_checkpoint(out_dir: Path, model, optimizer, state: dict) -> None:
    import torch
    from safetensors.torch import save_file, save_model

    final = out_dir / "checkpoint"
    tmp = out_dir / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"))  # handles tied embeddings
    opt = optimizer.state_dict()
    tensors = {"rng.torch": torch.get_rng_state()}
    for pid, st in opt["state"].items():
        for k, v in st.items():
            tensors[f"state.{pid}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "optimizer.safetensors"))
    write_json(tmp / "state.json", {**state, "param_groups": opt["param_groups"]})
    old = out_dir / "checkpoint.old"
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(out_dir: str | Path) -> Path | None:
    """The last complete checkpoint (`checkpoint/`, or `checkpoint.old/` after a kill between the two renames)."""
    for name in ("checkpoint", "checkpoint.old"):
        p = Path(out_dir) / name
        if (p / "state.json").is_file() and (p / "optimizer.safetensors").is_file():
            return p
    return None


def _load_checkpoint(ckpt: Path, model, optimizer) -> dict:
    import torch
    from safetensors.torch import load_file
    from safetensors.torch import load_model as load_weights_into

    load_weights_into(model, str(ckpt / "model.safetensors"))
    state = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
    tensors = load_file(str(ckpt / "optimizer.safetensors"))
    opt_state: dict = {}
    for key, v in tensors.items():
        if key.startswith("state."):
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = v
    optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    return state


def _log_until(path: Path, step: int, rewrite: bool) -> list[dict]:
    """Log rows up to the resumed checkpoint's step; later rows (logged after it, before a kill) are dropped."""
    if not path.is_file():
        return []
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    rows = [r for r in rows if r.get("step", 0) <= step]
    if rewrite:
        from soaes_bench.io import atomic_write_text

        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return rows


# ---------------------------------------------------------------- the loop
def _optimizer(model, args: TrainArgs):
    import torch

    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.lr, betas=(args.beta1, args.beta2), eps=1e-8)


_DEFAULTS = {f.name: f.default for f in fields(TrainArgs)}


def _fingerprint(args: TrainArgs, total_steps: int, n_items: int) -> dict:
    d = asdict(args)
    for k in ("max_minutes", "checkpoint_every", "log_every", "micro_batch"):
        d.pop(k)
    return {**d, "total_steps": total_steps, "n_items": n_items}


def train(model, dataset, collate: Callable, args: TrainArgs, out_dir: str | Path, *,
          loss_fn: Callable = lm_loss, total_steps: int | None = None, resume: bool = True,
          until_step: int | None = None, eval_fn: Callable | None = None, desc: str = "train",
          accelerator=None) -> TrainResult:
    """Train `model` on `dataset` (len + [i] -> item; `collate(items) -> batch` with `labels`).

    loss_fn(model, batch) -> (summed loss over counted tokens, count); the count must equal
    `count_label_tokens(batch)` (the loop normalises by the global count before the backward).
    total_steps: the schedule length (default `resolve_steps(args, tokens of item 0)`).
    until_step: pause after this step (checkpoint written), as if killed; a later call with resume continues.
    eval_fn(model) -> dict of numbers, run on the main process at each checkpoint and at the end; logged.
    Returns the unwrapped model (float32) and a summary; writes <out>/train_log.jsonl and <out>/checkpoint/.
    """
    import torch
    from tqdm.auto import tqdm

    out = Path(out_dir)
    accelerator = accelerator or make_accelerator()
    world, rank = accelerator.num_processes, accelerator.process_index
    micro = min(args.micro_batch, args.batch_size // world)  # more processes -> smaller micro-batches
    if micro < 1 or args.batch_size % (micro * world):
        raise UserError(f"train.batch_size: {args.batch_size} is not a multiple of micro_batch x processes "
                        f"({micro} x {world})")
    accum = args.batch_size // (micro * world)
    n = len(dataset)
    if total_steps is None:
        total_steps = resolve_steps(args, len(dataset[0]["input_ids"]))
    torch.manual_seed(args.seed)
    model.to(accelerator.device)  # before the optimizer and the checkpoint load, so AdamW state lives on the same device
    model.train()
    optimizer = _optimizer(model, args)
    start, tokens_seen, log = 0, 0, []
    fp = _fingerprint(args, total_steps, n)
    ckpt = find_checkpoint(out) if resume else None
    if ckpt is not None:
        state = _load_checkpoint(ckpt, model, optimizer)
        saved = {**_DEFAULTS, **state["fingerprint"]}  # a setting added since the checkpoint counts as its default
        diff = sorted(k for k in fp if saved.get(k) != fp[k])
        if diff:
            raise UserError(f"{ckpt}: checkpoint was made with different settings ({', '.join(diff)}); "
                            "delete it or run without resume")
        start, tokens_seen = state["step"], state["tokens"]
        log = _log_until(out / "train_log.jsonl", start, accelerator.is_main_process)
    elif accelerator.is_main_process and (out / "train_log.jsonl").exists():
        (out / "train_log.jsonl").unlink()
    ddp_model = accelerator.prepare(model)
    accelerator.wait_for_everyone()
    lengths = [len(dataset[i]["input_ids"]) for i in range(n)] if args.group_by_length else None
    stream = DataStream(n, args.seed, lengths, args.batch_size, args.group_by_length)

    def batches_for(step: int):
        """[(micro-step, this process's batch)] plus global counted/input tokens of the whole step."""
        idx = stream.indices(step * args.batch_size, args.batch_size)
        mine, counted, inputs = [], 0, 0
        for a in range(accum):
            for r in range(world):
                lo = (a * world + r) * micro
                batch = collate([dataset[i] for i in idx[lo:lo + micro]])
                counted += count_label_tokens(batch)
                inputs += count_input_tokens(batch)
                if r == rank:
                    mine.append(batch)
        return mine, counted, inputs

    def checkpoint(step, stopped_by=None):
        if accelerator.is_main_process:
            _save_checkpoint(out, accelerator.unwrap_model(ddp_model), optimizer,
                             {"step": step, "tokens": tokens_seen, "fingerprint": fp, "world": world,
                              "samples_seen": step * args.batch_size, "stopped_by": stopped_by})
        accelerator.wait_for_everyone()

    def run_eval():
        m = accelerator.unwrap_model(ddp_model)
        m.eval()
        with torch.no_grad():
            result = eval_fn(m)
        m.train()
        return result

    def write_log(row):
        log.append(row)
        if accelerator.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "train_log.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    last_loss = next((row["loss"] for row in reversed(log) if "loss" in row), None)
    t0, tok0, stopped_by = time.perf_counter(), tokens_seen, "done"
    end = total_steps if until_step is None else min(total_steps, until_step)
    bar = tqdm(total=total_steps, initial=start, desc=desc, disable=not accelerator.is_main_process, dynamic_ncols=True)
    step = start
    while step < end:
        lr = lr_at(step, total_steps, args.lr, args.warmup_steps, args.min_lr_ratio)
        for g in optimizer.param_groups:
            g["lr"] = lr
        mine, counted, inputs = batches_for(step)
        step_loss = torch.zeros((), device=accelerator.device)
        for a, batch in enumerate(mine):
            sync = contextlib.nullcontext() if a == len(mine) - 1 else accelerator.no_sync(ddp_model)
            with sync:
                loss_sum, _ = loss_fn(ddp_model, to_device(batch, accelerator.device))
                # DDP averages gradients over processes, hence the factor `world`.
                accelerator.backward(loss_sum * (world / max(counted, 1)))
            step_loss += loss_sum.detach().float()
        if args.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(ddp_model.parameters(), args.grad_clip)
        else:
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in ddp_model.parameters() if p.grad is not None])
        last_loss = float(accelerator.reduce(step_loss, reduction="sum")) / max(counted, 1)
        if not (math.isfinite(last_loss) and math.isfinite(float(grad_norm))):  # the same verdict on every process
            bar.close()
            raise _diverged(desc, step + 1, last_loss, float(grad_norm), out)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        tokens_seen += inputs
        elapsed = time.perf_counter() - t0
        bar.update(1)
        if step % args.log_every == 0 or step == end:
            tps = (tokens_seen - tok0) / max(elapsed, 1e-9)
            bar.set_postfix(loss=f"{last_loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tps:.0f}")
            write_log({"step": step, "loss": round(last_loss, 5), "lr": lr, "tokens": tokens_seen,
                       "tok_per_s": round(tps, 1), "elapsed_s": round(elapsed, 2)})
        over = torch.tensor(float(args.max_minutes is not None and elapsed > 60 * args.max_minutes), device=accelerator.device)
        if float(accelerator.reduce(over, reduction="max")) > 0 and step < end:
            stopped_by = "time"
            break
        if step % args.checkpoint_every == 0 and step < end:
            checkpoint(step)
            if eval_fn is not None and accelerator.is_main_process:
                write_log({"step": step, "eval": run_eval()})
    bar.close()
    if stopped_by == "done" and step < total_steps:
        stopped_by = "until_step"
    checkpoint(step, stopped_by)
    if eval_fn is not None and accelerator.is_main_process and step > start:
        write_log({"step": step, "eval": run_eval()})
    model = accelerator.unwrap_model(ddp_model)
    model.eval()
    return TrainResult(model=model, steps=step, total_steps=total_steps, tokens=tokens_seen,
                       stopped_by=stopped_by, last_loss=last_loss, log=log)


def mean_block_loss(model, blocks, micro_batch: int = 8) -> float:
    """Mean next-token cross-entropy (nats/token) of `model` on packed blocks [n, T]; used as validation loss."""
    import torch

    from soaes_bench.training.losses import causal_lm_loss

    total, count = 0.0, 0
    device = next(model.parameters()).device
    with torch.no_grad():
        for i in range(0, len(blocks), micro_batch):
            ids = blocks[i:i + micro_batch].to(device)
            logits = model(input_ids=ids, use_cache=False).logits
            total += float(causal_lm_loss(logits, ids, reduction="sum"))
            count += ids.size(0) * (ids.size(1) - 1)
    return total / max(count, 1)
