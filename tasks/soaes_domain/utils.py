"""lm-eval hooks for the soaes_domain suite (referenced from the YAMLs as `!function utils.<name>`).

Data paths are resolved from this file, not from the working directory, so the suite loads the same files under
`soaes-bench run`, under plain `lm_eval --include_path tasks` from any folder, and from the installed wheel.
The shared logic lives in soaes_bench.evaluation.task_hooks.
"""

from pathlib import Path

from soaes_bench.evaluation.task_hooks import (  # noqa: F401
    corpus_bleu4, corpus_distinct, corpus_length_ratio, load_split, process_bpb, process_gen)
from soaes_bench.evaluation.task_hooks import (  # noqa: F401  multiple choice: cloze and circular forms
    circular_accuracy, circular_docs, process_mc_circular, process_mc_cloze)

DATA_DIR = Path(__file__).resolve().parent / "data"


def load(data_file=None, **_ignored):
    """`custom_dataset` hook: lm-eval passes the task metadata plus `dataset_kwargs` (which holds data_file)."""
    return load_split(DATA_DIR / str(data_file))
