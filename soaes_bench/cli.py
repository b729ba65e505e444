"""`soaes-bench` command line: argument parsing only.

Each subcommand maps to a `module:function` taking the parsed namespace and returning an exit code; the modules
hold the logic and a plain Python API. Handlers are imported lazily so `soaes-bench --help` stays fast.
Errors the user can fix are raised as `UserError` and printed as one line (exit code 2 unless stated).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from soaes_bench import __version__
from soaes_bench.defaults import BATCH_SIZE, BOOTSTRAP_SEED, GEN_BATCH_SIZE, RESAMPLES, SEED
from soaes_bench.errors import UserError

# subcommand -> handler. tests/test_cli.py checks this map against the parser and the README.
COMMANDS = {
    "data build": "soaes_bench.data.build:cli_build",
    "data check": "soaes_bench.data.check:cli_check",
    "score": "soaes_bench.metrics.score:cli_score",
    "run": "soaes_bench.evaluation.run:cli_run",
    "ls": "soaes_bench.evaluation.suites:cli_ls",
    "train base": "soaes_bench.training.pretrain:cli_train_base",
    "pipeline": "soaes_bench.pipeline:cli_pipeline",
    "gate": "soaes_bench.pipeline:cli_gate",
    "profile": "soaes_bench.reporting.profile_report:cli_profile",
    "compare": "soaes_bench.reporting.compare:cli_compare",
    "check": "soaes_bench.reporting.check:cli_check",
    "power": "soaes_bench.reporting.power:cli_power",
    "calibrate": "soaes_bench.reporting.calibrate:cli_calibrate",
    "floors": "soaes_bench.evaluation.task_floors:cli_floors",
    "plot": "soaes_bench.reporting.plots:cli_plot",
    "report": "soaes_bench.reporting.report:cli_report",
    "ablations": "soaes_bench.reporting.ablations:cli_ablations",
}


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


class _OneLineParser(argparse.ArgumentParser):
    """argparse's errors as one line (`soaes-bench run: error: argument --limit: invalid int value: 'x'`), exit 2,
    like every other bad input; `--help` is unchanged."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(
        prog="soaes-bench",
        description="Benchmark-first harness for Chinese domain LLMs (SOAEsV2): suites, gates, speculative-decoding profiler.",
    )
    p.set_defaults(help_parser=p)
    p.add_argument("--version", action="version", version=f"soaes-bench {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    # data -------------------------------------------------------------------------------------
    data = sub.add_parser("data", help="build and check the corpora, SFT sets, eval sets and tokenizer")
    data.set_defaults(help_parser=data)
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION")
    b = dsub.add_parser("build", help="rebuild every data set deterministically from the pinned sources")
    b.add_argument("--seed", type=int, default=SEED)
    b.add_argument("--cache-dir", default=None, help="where source archives are downloaded (default ~/.cache/soaes-bench)")
    b.add_argument("--no-tokenizer", action="store_true", help="skip training the tokenizer")
    b.add_argument("--verify", action="store_true",
                   help="build nothing: re-hash the built files against training/data/MANIFEST.json (exit 1 on a mismatch)")
    b.set_defaults(handler="data build")
    c = dsub.add_parser("check", help="validate schemas, duplicates and train/eval contamination")
    c.add_argument("--max-leak", type=float, default=None, help="fail when more than this fraction of an eval set's items are leaked "
                        "(>= 80%% covered by training 13-grams; default 0.05)")
    c.add_argument("--json", action="store_true", help="print the report as one JSON object")
    c.set_defaults(handler="data check")

    # score ------------------------------------------------------------------------------------
    s = sub.add_parser("score", help="ROUGE-1/2/L and BLEU-4 for Chinese predictions vs references")
    s.add_argument("--pred", required=True, help="predictions: one per line, or JSONL with a `text` field")
    s.add_argument("--ref", required=True, help="references, same format and order")
    s.add_argument("--json", action="store_true", help="print exactly one JSON object")
    s.add_argument("--char", action="store_true", help="character-level ROUGE instead of jieba words")
    s.set_defaults(handler="score")

    # run / ls ---------------------------------------------------------------------------------
    r = sub.add_parser("run", help="evaluate a model on the general and/or SOAE-domain suites (lm-eval in-process)")
    r.add_argument("--suite", default="all", help="general, domain or all")
    r.add_argument("--model", default=None, help="local Hugging Face model directory (default: embedded model), or "
                   "constant:[ANSWER], a content-free model: uniform bytes, first option on ties, ANSWER to every question")
    r.add_argument("--tasks", default=None, help="comma-separated task names (instead of a suite)")
    r.add_argument("--include-path", default=None, help="extra lm-eval task folder, as lm_eval --include_path")
    r.add_argument("--limit", type=int, default=None, help="evaluate only the first N items of each task")
    r.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                   help=f"sequences per scoring forward (default: {BATCH_SIZE})")
    r.add_argument("--gen-batch-size", type=int, default=GEN_BATCH_SIZE,
                   help=f"prompts per generation batch (default: {GEN_BATCH_SIZE})")
    r.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    r.add_argument("--output", default="reports/latest", help="output directory (results.json, results.md, samples/)")
    r.add_argument("--seed", type=int, default=SEED)
    r.add_argument("--chat-template", default="auto", choices=["auto", "on", "off"],
                   help="wrap prompts in the model's chat template (auto: when the tokenizer has one)")
    r.add_argument("--backend", default="hf", choices=["hf", "vllm"],
                   help="hf: transformers through lm-eval's HFLM (CPU or GPU; data parallel under accelerate launch); "
                        "vllm: lm-eval's vLLM model, GPU, installed separately (docs/backends.md)")
    r.add_argument("--tensor-parallel-size", type=int, default=None, help="vllm: GPUs per model replica (default 1)")
    r.add_argument("--data-parallel-size", type=int, default=None,
                   help="vllm: model replicas, through ray (default 1); for hf use accelerate launch")
    r.add_argument("--gpu-memory-utilization", type=float, default=None,
                   help="vllm: fraction of each GPU's memory the engine may take (default 0.9)")
    r.add_argument("--max-model-len", type=int, default=None,
                   help="vllm: longest sequence the engine plans for (default: the model's own)")
    r.set_defaults(handler="run")
    ls = sub.add_parser("ls", help="list suites, tasks and embedded models")
    ls.add_argument("--include-path", default=None)
    ls.set_defaults(handler="ls")

    # training ---------------------------------------------------------------------------------
    t = sub.add_parser("train", help="train the embedded base model (phase 0)")
    t.set_defaults(help_parser=t)
    tsub = t.add_subparsers(dest="train_command", metavar="WHAT")
    tb = tsub.add_parser("base", help="pretrain the small Qwen2 reference base model on the general corpus")
    tb.add_argument("--recipe", default=None, help="recipe YAML (default training/recipes/base.yaml)")
    tb.add_argument("--output", default=None, help="output model directory")
    tb.set_defaults(handler="train base")
    pl = sub.add_parser("pipeline", help="run the gated training phases of a recipe (CPT, SFT, distillation)")
    pl.add_argument("--recipe", required=True)
    pl.add_argument("--resume", action="store_true")
    pl.add_argument("--only", default=None, help="run only this phase")
    pl.add_argument("--output", default=None, help="runs directory (default runs/<recipe name>)")
    pl.set_defaults(handler="pipeline")
    gt = sub.add_parser("gate", help="judge one phase's gates of a recipe on saved runs (exit 0 pass, 3 fail, 2 bad input)")
    gt.add_argument("--recipe", required=True)
    gt.add_argument("--phase", required=True, help="the phase whose gates are judged (cpt, sft, distill)")
    gt.add_argument("--results", action="append", required=True,
                    help="the phase model's results: results.json, a run dir, or a phase dir (eval/ + eval_plain/); "
                         "repeat to merge (e.g. eval/ and eval_plain/)")
    gt.add_argument("--reference", action="append", default=[], metavar="NAME=RUN",
                    help="a reference the gates name (base, previous, cpt, ...) and its run; repeat")
    gt.add_argument("--output", default=None, help="also write gate.json and gate.md into this directory")
    gt.add_argument("--resamples", type=int, default=RESAMPLES, help=f"bootstrap resamples (default {RESAMPLES})")
    gt.add_argument("--seed", type=int, default=BOOTSTRAP_SEED, help=f"bootstrap seed (default {BOOTSTRAP_SEED})")
    gt.set_defaults(handler="gate")

    # profiler ---------------------------------------------------------------------------------
    pr = sub.add_parser("profile", help="speculative-decoding profiler: acceptance, tau, speedup vs gamma and context")
    pr.add_argument("--target", default=None, help="target model dir (default: embedded target)")
    pr.add_argument("--draft", default=None, help="draft model dir (default: embedded distilled draft)")
    pr.add_argument("--gamma", type=_ints, default=[1, 2, 3, 4, 6, 8])
    pr.add_argument("--contexts", type=_ints, default=[128, 512, 1024])
    pr.add_argument("--prompts", default="all", help="suite name (general, domain, all) or a JSONL/text file of prompts")
    pr.add_argument("--max-new-tokens", type=int, default=64)
    pr.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (lossless); > 0 = rejection sampling")
    pr.add_argument("--repeats", type=int, default=6,
                    help="timed repeats; CIs of the median are order statistics: 6 give [min, max] at 96.9%%, "
                         "3 only 75%% (at least 6 for 95%%)")
    pr.add_argument("--num-prompts", type=int, default=8)
    pr.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    pr.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                    help="weights and compute; auto = bfloat16 where the device has native bf16 math, else float32; "
                         "float16: GPU only")
    pr.add_argument("--attn", default="eager", choices=["eager", "sdpa"],
                    help="attention kernel (default eager: a (gamma+1)-token verification then gives the logits of "
                         "gamma+1 single steps bit for bit on a CPU; sdpa is faster on GPUs, check `lossless`)")
    pr.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's choice; use 1 on a busy machine: timings stay sane)")
    pr.add_argument("--seed", type=int, default=SEED)
    pr.add_argument("--ignore-eos", action="store_true",
                    help="always generate --max-new-tokens (steady-state decoding speed; short answers are mostly prefill)")
    pr.add_argument("--save-outputs", action="store_true", help="also write outputs.jsonl (prompt/target/spec ids)")
    pr.add_argument("--hf-baseline", action="store_true", help="also time HF assisted generation on the same pair")
    pr.add_argument("--output", default="reports/profile")
    pr.set_defaults(handler="profile")

    # reporting --------------------------------------------------------------------------------
    cp = sub.add_parser("compare", help="paired comparison of runs: differences, ratios, bootstrap CIs, McNemar")
    cp.add_argument("runs", nargs="+", help="results.json files or run directories (first is the reference)")
    cp.add_argument("--resamples", type=int, default=RESAMPLES)
    cp.add_argument("--seed", type=int, default=BOOTSTRAP_SEED)
    cp.add_argument("--force", action="store_true", help="compare even if task configs or backends differ")
    cp.add_argument("--unit", default="cluster", choices=["cluster", "item"],
                    help="resample the items' clusters (source documents; items where the samples have no keys) "
                         "or the items (default cluster)")
    cp.add_argument("--correction", default="holm", choices=["holm", "bh", "none"],
                    help="multiplicity correction over the task x metric p-values of each run pair (default holm; "
                         "bh = Benjamini-Hochberg)")
    cp.add_argument("--format", default="table", choices=["table", "markdown", "csv", "latex"])
    cp.add_argument("--output", default=None, help="also write the table here (format from the suffix)")
    cp.set_defaults(handler="compare")
    ck = sub.add_parser("check", help="CI regression check: exit 0 ok, 1 regression, 2 bad input")
    ck.add_argument("--baseline", required=True)
    ck.add_argument("--results", required=True)
    ck.add_argument("--policy", default=None, help="YAML tolerances per task/metric")
    ck.add_argument("--resamples", type=int, default=None, help=f"bootstrap resamples (default: the policy's, {RESAMPLES})")
    ck.add_argument("--seed", type=int, default=None, help=f"bootstrap seed (default: the policy's, {BOOTSTRAP_SEED})")
    ck.add_argument("--unit", default="cluster", choices=["cluster", "item"],
                    help="resample clusters (source documents) where the samples have keys, or items (default cluster)")
    ck.set_defaults(handler="check")
    pw = sub.add_parser("power", help="items and clusters needed to detect a difference, from a baseline's per-item "
                                      "variance and intra-cluster correlation")
    pw.add_argument("--baseline", required=True, help="results.json or run directory with samples")
    pw.add_argument("--results", default=None,
                    help="a second run: use the observed paired differences instead of the baseline's spread")
    pw.add_argument("--effect", type=float, default=0.02, help="the true difference to detect, in metric units "
                                                               "(default 0.02; ROUGE and BLEU are 0-100)")
    pw.add_argument("--task", default=None, help="one task (default: every task with samples)")
    pw.add_argument("--metric", default=None, help="one metric (default: every metric with per-item values)")
    pw.add_argument("--power", type=float, default=0.8, help="probability of detecting --effect (default 0.8)")
    pw.add_argument("--alpha", type=float, default=0.05, help="two-sided level of the test (default 0.05)")
    pw.add_argument("--unit", default="cluster", choices=["cluster", "item"],
                    help="plan for clustered items (default) or treat items as independent")
    pw.add_argument("--training-sd", type=float, default=None,
                    help="SD of the compared difference between trainings that differ only in the seed (units of "
                         "--metric, one metric's: give --task and --metric): adds the MDE of one training and the "
                         "trainings per arm needed")
    pw.set_defaults(handler="power")
    cb = sub.add_parser("calibrate", help="check's tolerances from the run-to-run spread of one model under settings "
                                          "that should not matter (batch size, threads) -> a policy YAML")
    cb.add_argument("--model", default=None, help="model directory (default: the embedded target), or constant:")
    cb.add_argument("--suite", default="all", help="general, domain or all")
    cb.add_argument("--tasks", default=None, help="comma-separated task names (instead of a suite)")
    cb.add_argument("--include-path", default=None, help="extra lm-eval task folder, as lm_eval --include_path")
    cb.add_argument("--limit", type=int, default=None, help="evaluate only the first N items of each task")
    cb.add_argument("--output", default="reports/policy.yaml", help="policy file to write")
    cb.add_argument("--setting", dest="settings", action="append", default=None, metavar="KEY=V,...",
                    help="one run's settings, e.g. batch=1,gen=1,threads=1 (keys batch, gen, threads, backend); "
                         "repeat the flag; default: batch=8,gen=32,threads=1; batch=1,gen=1,threads=1; "
                         "batch=8,gen=32,threads=2")
    cb.add_argument("--repeats", type=int, default=1, help="runs of each setting (default 1)")
    cb.add_argument("--with", dest="with_runs", action="append", default=None, metavar="RUN",
                    help="a finished run of the same model to include (results.json or its folder), e.g. "
                         "reports/baseline; repeat the flag")
    cb.add_argument("--k", type=float, default=3.0, help="tolerance = max(K x spread, floor) (default 3)")
    cb.add_argument("--runs-dir", default=None, help="keep the evaluation runs here (default: a temporary folder)")
    cb.add_argument("--seed", type=int, default=SEED)
    cb.set_defaults(handler="calibrate")
    fl = sub.add_parser("floors", help="content-free floors of each task and metric (no model): always A, "
                                       "most common answer, uniform bytes, ...")
    fl.add_argument("--tasks", default=None, help="comma-separated task or group names (instead of a suite)")
    fl.add_argument("--suite", default="all", choices=["general", "domain", "all"])
    fl.add_argument("--include-path", default=None, help="extra lm-eval task folder, as lm_eval --include_path")
    fl.add_argument("--json", action="store_true", help="print one JSON object {task: floors}")
    fl.set_defaults(handler="floors")
    pt = sub.add_parser("plot", help="paper figures (PNG+SVG+PDF) from results, gate and profile files")
    pt.add_argument("inputs", nargs="+", help="results.json / gate / profile files or directories")
    pt.add_argument("--kind", default="auto",
                    help="auto, phases, sft-ablation, distillation, profile, models")
    pt.add_argument("--output", default="reports/figures")
    pt.add_argument("--labels", default=None,
                    help="comma-separated names for the inputs, in order (default: model, phase or draft names)")
    pt.set_defaults(handler="plot")
    rp = sub.add_parser("report", help="one Markdown report for a run directory")
    rp.add_argument("run_dir")
    rp.add_argument("--output", default=None, help="report path (default RUN_DIR/report.md)")
    rp.set_defaults(handler="report")
    ab = sub.add_parser("ablations", help="forgetting (McNemar) and ablation reports (paired bootstrap) of a pipeline "
                                          "run directory, from the files it holds (no model)")
    ab.add_argument("run_dir", help="pipeline output directory, e.g. runs/reference")
    ab.add_argument("--resamples", type=int, default=RESAMPLES,
                    help=f"bootstrap resamples for the SFT ablation CI (default {RESAMPLES})")
    ab.add_argument("--seed", type=int, default=BOOTSTRAP_SEED, help=f"bootstrap seed (default {BOOTSTRAP_SEED})")
    ab.set_defaults(handler="ablations")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version (0) or a malformed option (2, one line printed)
        return e.code if isinstance(e.code, int) else 2
    handler = getattr(args, "handler", None)
    if handler is None:
        # `soaes-bench`, `soaes-bench data`, `soaes-bench train` without an action: usage, exit 2.
        args.help_parser.print_help(sys.stderr)
        return 2
    module_name, func_name = COMMANDS[handler].split(":")
    try:
        # one validation pass over what every command shares, before any work: numeric options finite and in
        # range, --output usable and outside the package, --include-path YAML sound (soaes_bench/validate.py)
        from soaes_bench import validate

        validate.options(handler, args)
        if getattr(args, "include_path", None):
            validate.task_folder(args.include_path)
        func = getattr(importlib.import_module(module_name), func_name)
        return int(func(args) or 0)
    except UserError as e:
        print(f"soaes-bench {handler}: error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print(f"soaes-bench {handler}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
