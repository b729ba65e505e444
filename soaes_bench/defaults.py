"""Defaults that several commands and Python functions share, written once (base layer: imports nothing).

The CLI flags, the Python API (`evaluate`, `run`, the pipeline's `evaluation:` block, the gates, `compare`) and the
docs all read these, so `soaes-bench run` and `soaes_bench.evaluate` cannot drift apart.
"""

SEED = 1234  # lm-eval's four seeds, the data build, training (TrainArgs.seed) and the profiler
BATCH_SIZE = 8  # sequences per scoring (loglikelihood) forward in lm-eval
GEN_BATCH_SIZE = 32  # prompts per generation batch in lm-eval (evaluation/run.py `_hflm` says why it differs)
RESAMPLES = 2000  # bootstrap resamples: compare, check, gates, ablations
BOOTSTRAP_SEED = 0  # seed of the bootstrap draws
CONFIDENCE = 0.95  # two-sided level of every reported interval
