"""SFT with random against length-grouped batches (train.group_by_length), side by side on one machine.

    .venv/bin/python benchmarks/bench_sft_grouping.py --recipe training/recipes/reference.yaml --repeats 6

SFT stage 1 of the recipe (its data, model size, batch and seed) trains for --steps steps with random batches and
with length-grouped ones, alternating (random, grouped, grouped, random, ...) so machine-load drift hits both.
Printed: the padded tokens of the whole stage for each, and the wall time of the steps (the loop's own timer) as the
median ratio random / grouped with the order-statistic CI of that median over the repeats, labelled with its real
level (6 repeats, the default: [min, max] at 96.9%; the 3 of reports/benchmarks/bench_sft_grouping.txt: 75%).
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path

from bench_training import DEFAULT_REPEATS, ci_text, machine, median_interval, side_by_side_main  # shared helpers


def padded_tokens(stream, lengths, batch: int, steps: int) -> tuple[int, int]:
    """(real, padded) tokens of the first `steps` batches of `stream` (each batch padded to its longest item)."""
    idx = stream.indices(0, batch * steps)
    rows = [idx[j:j + batch] for j in range(0, len(idx), batch)]
    return sum(lengths[i] for i in idx), sum(len(b) * max(lengths[i] for i in b) for b in rows)


def bench_grouping(a) -> dict:
    """The reference SFT stage (its data, model size, batch and seed) trained with random and with length-grouped
    batches, alternating, for --steps steps each: wall time of the steps (the loop's own timer) and the
    padded tokens of the whole stage, as ratios random / grouped."""
    import torch

    from soaes_bench.config import load_dataclass
    from soaes_bench.training import data
    from soaes_bench.training.loop import DataStream, train
    from soaes_bench.models import load_model, load_tokenizer
    from soaes_bench.pipeline_recipe import PipelineRecipe

    torch.set_num_threads(a.threads)
    recipe = load_dataclass(PipelineRecipe, a.recipe)
    stage = recipe.sft.stages[0]
    tok = load_tokenizer(recipe.tokenizer)
    examples, _ = data.load_sft(stage.data, tok, recipe.sft.max_len)
    lengths = [len(e["input_ids"]) for e in examples]
    grouped = stage.train.group_by_length or 16
    settings = {"random": 0, "grouped": grouped}
    b, total = stage.train.batch_size, stage.train.max_steps or 100

    def padding(steps: int) -> dict[str, tuple[int, int]]:
        return {k: padded_tokens(DataStream(len(examples), stage.train.seed, lengths, b, g), lengths, b, steps)
                for k, g in settings.items()}

    tokens = padding(total)
    print(f"SFT stage 1 of {a.recipe}: {len(examples)} examples, batch {b}, {total} steps; grouped = chunks "
          f"of {grouped} batches; {a.steps} steps x {a.repeats} repeats each, {torch.get_num_threads()} "
          f"thread(s); {machine()}", flush=True)
    for k, (real, padded) in tokens.items():
        print(f"  {k:<8} whole stage: {padded:,} padded tokens for {real:,} real (real/padded {real / padded:.3f})")
    init = load_model(recipe.init)
    collate = data.make_pad_collate(tok.pad_token_id)
    times: dict[str, list[float]] = {k: [] for k in settings}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            for k in (("random", "grouped") if r % 2 == 0 else ("grouped", "random")):
                args = dataclasses.replace(stage.train, group_by_length=settings[k], checkpoint_every=10**9,
                                           log_every=10**9, max_minutes=None)
                res = train(copy.deepcopy(init), data.Examples(examples), collate, args, Path(tmp) / f"{k}{r}",
                            total_steps=total, until_step=a.steps, resume=False, desc=k)
                times[k].append([row for row in res.log if "loss" in row][-1]["elapsed_s"])
            print(f"  repeat {r + 1}: random {times['random'][-1]:.1f} s, grouped {times['grouped'][-1]:.1f} s "
                  f"(ratio {times['random'][-1] / times['grouped'][-1]:.2f})", flush=True)
    ratios = [x / y for x, y in zip(times["random"], times["grouped"])]
    m = median_interval(ratios)
    step_tokens = {k: v[1] for k, v in padding(a.steps).items()}
    pad_ratio = tokens["random"][1] / tokens["grouped"][1]
    print(f"  RATIO random/grouped wall time over {a.steps} steps: {ci_text(ratios)}  "
          f"(padded tokens in those steps: {step_tokens['random'] / step_tokens['grouped']:.2f})")
    print(f"  ratio random/grouped padded tokens, whole stage: {pad_ratio:.2f}")
    return {"times_s": times, "ratios": ratios, "ratio_median": statistics.median(ratios), "ratio_ci": m["ci"],
            "ratio_ci_level": m["level"],
            "tokens": tokens, "padded_ratio_stage": pad_ratio}


def main(argv=None) -> int:
    return side_by_side_main(argv, __doc__.splitlines()[0], bench_grouping, "pipeline recipe with an sft block",
                             steps=20, repeats=DEFAULT_REPEATS)


if __name__ == "__main__":
    sys.exit(main())
