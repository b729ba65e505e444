"""The distillation teacher cache's memory stays bounded by the cache itself plus a few batches of logits.

Keeping each batch's small top-k results alive in lists until a final torch.cat grew the micro pipeline's process to
more than 11 GB: glibc's malloc served the later [batch, T, V] logits from its heap and every kept result landed in
the hole a freed logits buffer left (soaes_bench/training/distill.py, benchmarks/bench_memory.py). The first test
checks the cause, whatever the allocator: nothing allocated for one batch is still alive at the next. The second
checks the symptom where it shows (glibc): the peak resident set size while building a small cache, which also
catches any change that holds [N, V] logits for all rows at once (780 MiB here, against a bound of 97 MiB).
"""

import gc
import os
import platform
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from soaes_bench.training import distill as DS

B, T, K = 8, 32, 8  # teacher_cache's default batch; the micro recipe's seq_len and top_k


class FakeTeacher(torch.nn.Module):
    """A two-matrix "LM": ids -> logits [B, T, V] float32, what teacher_cache reads from a real teacher."""

    def __init__(self, vocab: int, on_forward=None):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.config = SimpleNamespace(vocab_size=vocab)
        self.emb = torch.nn.Parameter(torch.randn(vocab, 16, generator=g))
        self.head = torch.nn.Parameter(torch.randn(vocab, 16, generator=g))
        self.on_forward = on_forward

    def forward(self, input_ids, use_cache=False):
        if self.on_forward is not None:
            self.on_forward()
        return SimpleNamespace(logits=self.emb[input_ids] @ self.head.t())


def _cache(teacher, n_blocks: int, tmp: Path, vocab: int):
    blocks = torch.randint(0, vocab, (n_blocks, T), generator=torch.Generator().manual_seed(1))
    cfg = DS.DistillConfig(seq_len=T, top_k=K)
    (tmp / "teacher").mkdir(exist_ok=True)
    return blocks, DS.teacher_cache(teacher, tmp / "teacher", blocks, cfg, tmp / "cache.safetensors", batch=B)


def _live_tensors() -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # isinstance on some torch module attributes warns of deprecations
        return sum(isinstance(o, torch.Tensor) for o in gc.get_objects())


def test_teacher_cache_keeps_nothing_per_batch(tmp_path):
    """At every teacher forward the same number of tensors is alive: the results go into the two cache tensors
    allocated up front, not into a list that grows by two tensors per batch."""
    live = []
    teacher = FakeTeacher(64, on_forward=lambda: live.append(_live_tensors()))
    blocks, (values, indices) = _cache(teacher, 6 * B, tmp_path, 64)
    assert len(live) == 6
    assert live[-1] == live[1], f"tensors alive at each teacher forward: {live}"
    # what the cache holds is unchanged: teacher_topk of each row, float16 log-probs and int16 ids, in block order
    from soaes_bench.training.losses import teacher_topk

    with torch.no_grad():
        v, ix = teacher_topk(teacher(blocks).logits.flatten(0, 1), K)
    assert values.dtype == torch.float16 and indices.dtype == torch.int16
    assert values.shape == indices.shape == (6 * B, T, K)
    assert torch.equal(values, v.view(6 * B, T, K).half()) and torch.equal(indices, ix.view(6 * B, T, K).short())
    again = DS.teacher_cache(teacher, tmp_path / "teacher", blocks, DS.DistillConfig(seq_len=T, top_k=K),
                             tmp_path / "cache.safetensors")  # read back from disk, same tensors
    assert torch.equal(again[0], values) and torch.equal(again[1], indices)


VOCAB, N_BLOCKS = 4000, 200 * B  # 4 MB of logits per batch, 200 batches


def _peak_growth_mb(tmp: Path) -> float:
    """In a fresh process: the peak RSS while building a cache, over the RSS before it (MiB)."""
    torch.set_num_threads(1)
    teacher = FakeTeacher(VOCAB)

    def status(key):
        return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key)) / 1024

    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = status("VmRSS")
    _cache(teacher, N_BLOCKS, tmp, VOCAB)
    return status("VmHWM") - before


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="measures glibc's heap through /proc")
def test_teacher_cache_peak_rss_is_bounded(tmp_path):
    root = str(Path(__file__).resolve().parents[1])  # this checkout's soaes_bench, whatever is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
           # glibc raises its mmap threshold to the size of the first big buffer it frees (up to 32 MiB), and from
           # then on serves such buffers from its heap, where they can fragment. Fixing the threshold from the start
           # puts every run in that state; whether the old code's heap then fragments still depends on the address
           # layout and hash seed: it grew 410-970 MiB here in 14 of 16 runs (22 MiB in the other two), this code
           # 18-39 MiB. The test above is the one that fails on the old code every time.
           "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20)}
    out = subprocess.run([sys.executable, __file__, str(tmp_path)], capture_output=True, text=True, timeout=300,
                         cwd=root, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    growth = float(out.stdout.split()[-1])
    logits_mb = B * T * VOCAB * 4 / 2**20
    cache_mb = N_BLOCKS * T * K * (2 + 2) / 2**20
    bound = cache_mb + 8 * logits_mb + 64  # the cache, a few [B*T, V] float32 temporaries, allocator slack
    assert growth <= bound, f"a {cache_mb:.1f} MiB cache raised the peak RSS by {growth:.0f} MiB (> {bound:.0f})"


if __name__ == "__main__":  # the child process of test_teacher_cache_peak_rss_is_bounded
    print(f"{_peak_growth_mb(Path(sys.argv[1])):.1f}")
