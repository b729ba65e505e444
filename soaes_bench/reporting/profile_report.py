"""`soaes-bench profile`: measure a target/draft pair (soaes_bench.speculative.profile), then write profile.json,
profile.md (profile_tables.py), the figures (profile_figures.py) and, with --save-outputs, outputs.jsonl.

    soaes-bench profile --target DIR --draft DIR --gamma 1,2,3,4,6,8 --contexts 128,512,1024 --output reports/profile
    relabel_dir("reports/profile")  # recompute a written profile's CIs and labels from its profile.json, no models

What is measured: soaes_bench/speculative/profile.py; the profile.json layout: soaes_bench/records/profile.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from soaes_bench import lock, validate
from soaes_bench.errors import UserError
from soaes_bench.io import atomic_write_text, write_jsonl
from soaes_bench.records import profile as profile_record
from soaes_bench.reporting.profile_figures import write_figures
from soaes_bench.reporting.profile_tables import to_markdown
from soaes_bench.speculative.model_pair import check_pair_dirs, load_pair
from soaes_bench.speculative.profile import default_pair_dirs, profile, relabel
from soaes_bench.speculative.prompts import load_prompts


def write_outputs(report: dict, out_dir: str | Path, outputs: list[dict] | None = None, figures: bool = True
                  ) -> list[Path]:
    """profile.json, profile.md, figures (PNG+SVG) and, when given, outputs.jsonl; every file written atomically."""
    out = Path(out_dir)
    paths = [profile_record.write(out / profile_record.FILE_NAME, report),
             atomic_write_text(out / "profile.md", to_markdown(report))]
    if outputs is not None:
        paths.append(write_jsonl(out / "outputs.jsonl", outputs))
    if figures:
        paths += write_figures(report, out / "figures")
    return paths


def relabel_dir(out_dir: str | Path, figures: bool | None = None) -> list[Path]:
    """`relabel` the profile.json in out_dir and re-render profile.md (and the figures, when out_dir has them)."""
    out = Path(out_dir)
    report = relabel(profile_record.read(out / profile_record.FILE_NAME))
    return write_outputs(report, out, figures=(out / "figures").is_dir() if figures is None else figures)


def cli_profile(args) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available")
    if getattr(args, "threads", None):
        if args.threads < 1:
            raise UserError(f"--threads: must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    target_dir, draft_dir = default_pair_dirs(args.target, args.draft)
    check_pair_dirs(target_dir, draft_dir)  # vocabularies from config.json and tokenizer files, before any weight
    # every input before minutes of timing: both model dirs (config/weights agree, complete, finite), the prompt
    # file (UTF-8), the output dir (usable, outside the package); then the output dir is locked for the run
    validate.model_dir(target_dir, "--target")
    validate.model_dir(draft_dir, "--draft")
    if Path(args.prompts).is_file():
        validate.input_file(args.prompts, "--prompts")
    prompts = load_prompts(args.prompts, args.num_prompts)
    out = validate.output_dir(args.output)
    with lock.hold(out, "soaes-bench profile"):
        target, draft, ttok, dtok = load_pair(target_dir, draft_dir, args.device, args.dtype,
                                              getattr(args, "attn", "eager"))
        report = profile(target, draft, ttok, prompts=prompts, gammas=args.gamma, contexts=args.contexts,
                         max_new_tokens=args.max_new_tokens, temperature=args.temperature, repeats=args.repeats,
                         num_prompts=args.num_prompts, seed=args.seed, hf_baseline=args.hf_baseline,
                         draft_tokenizer=dtok, target_path=target_dir, draft_path=draft_dir,
                         keep_outputs=args.save_outputs, ignore_eos=args.ignore_eos,
                         log=lambda m: print(m, file=sys.stderr))
        outputs = report.pop("outputs", None)
        write_outputs(report, out, outputs)
    s = report["summary"]

    def f(x, spec=".3f"):
        return "n/a" if x is None else format(x, spec)

    print(f"best gamma {s['best_gamma']} ({s['category']}): speedup {f(s['speedup'], '.2f')}x "
          f"(predicted {f(s['predicted_speedup'], '.2f')}x, measured/predicted {f(s['measured_over_predicted'], '.2f')}), "
          f"alpha {f(s['alpha'])}, tau {f(s['tau'], '.2f')}, c {f(s['c'])}, {report['env']['dtype']}, "
          f"{report['env']['device_name']}, lossless {f(s['lossless'])}"
          + (f", ours/HF assisted {f(s['ours_over_hf'], '.2f')}" if s["ours_over_hf"] is not None else ""))
    print(f"wrote {Path(args.output) / 'profile.json'}")
    return 0
