"""soaes-bench: benchmark-first harness for building Chinese domain LLMs the SOAEsV2 way.

The public Python API mirrors the CLI: every `soaes-bench <command>` is a function here or in a submodule.
Heavy imports (torch, lm-eval) are deferred so `import soaes_bench` stays cheap.
"""

__version__ = "0.1.0"


def evaluate(model, tokenizer, suite="all", **kwargs):
    """Evaluate an in-memory model on a suite; see `soaes_bench.evaluation.run.evaluate`."""
    from soaes_bench.evaluation.run import evaluate as _evaluate

    return _evaluate(model, tokenizer, suite=suite, **kwargs)
