"""The package's layers import only downward (docs/DESIGN.md, "Layers"): every `import` in soaes_bench/, at module
level or inside a function, is checked against the order below, so a cycle cannot hide in a function body.

A module may import modules of its own layer and of the layers listed before it, never of a later one. Within
measuring the sub-layers have their own order (models, data, metrics, evaluation, speculative, training): a
sub-layer imports the sub-layers before it, never one after it. Every module must belong to a layer, so a new
top-level module or subpackage has to be placed here first.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "soaes_bench"

# (layer, module prefixes), lowest first. "soaes_bench" alone is the package's __init__ (it holds __version__).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("soaes_bench", "soaes_bench.errors", "soaes_bench.io", "soaes_bench.config", "soaes_bench.paths",
              "soaes_bench.stats", "soaes_bench.defaults", "soaes_bench.lock", "soaes_bench.validate")),
    ("records", ("soaes_bench.records", "soaes_bench.results")),
    # measuring, in its own order: model files, then data sets, pure metrics, lm-eval runs, the speculative
    # decoder and profiler, and the training phases (distillation reads the speculative acceptance math)
    ("measuring: models", ("soaes_bench.models",)),
    ("measuring: data", ("soaes_bench.data",)),
    ("measuring: metrics", ("soaes_bench.metrics",)),
    ("measuring: evaluation", ("soaes_bench.evaluation",)),
    ("measuring: speculative", ("soaes_bench.speculative",)),
    ("measuring: training", ("soaes_bench.training",)),
    ("reporting", ("soaes_bench.reporting",)),
    ("top: pipeline and cli", ("soaes_bench.pipeline", "soaes_bench.pipeline_recipe", "soaes_bench.phase_eval",
                               "soaes_bench.cli", "soaes_bench.__main__")),
]

# (importing file, imported module): allowed against the order, each with its reason.
EXCEPTIONS = {
    # `soaes_bench.evaluate(model, tokenizer)`, the package's one-call API, forwards to the evaluation layer; the
    # import sits in the function so `import soaes_bench` (and __version__, which every layer reads) stays cheap.
    ("soaes_bench/__init__.py", "soaes_bench.evaluation.run"),
}


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def rank(module: str) -> int | None:
    """Index of the layer of `module` (the longest matching prefix), None when no layer holds it."""
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            matches = module == p if p == "soaes_bench" else module == p or module.startswith(p + ".")
            if matches and len(p) > best_len:
                best, best_len = i, len(p)
    return best


def _is_module(name: str, package: Path) -> bool:
    rel = Path(*name.split("."))
    return (package.parent / rel.with_suffix(".py")).is_file() or (package.parent / rel / "__init__.py").is_file()


def imports(path: Path, package: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, module) of every soaes_bench import in the file, at any depth. `from X import name` counts as an
    import of X.name when that is a module (`from soaes_bench import stats`), else of X."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path, package).split(".")
    if path.name != "__init__.py":
        here = here[:-1]  # the package a relative import starts from
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append((node.lineno, sub if _is_module(sub, package) else base))
    return [(line, m) for line, m in out if m == "soaes_bench" or m.startswith("soaes_bench.")]


def violations(package: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).as_posix()
        importer = module_name(path, package)
        own = rank(importer)
        if own is None:
            found.append(f"{rel}: {importer} is in no layer; add it to LAYERS in tests/test_layers.py")
            continue
        for line, imported in imports(path, package):
            theirs = rank(imported)
            if theirs is None:
                found.append(f"{rel}:{line}: {importer} imports {imported}, which is in no layer")
            elif theirs > own and (rel, imported) not in EXCEPTIONS:
                found.append(f"{rel}:{line}: {importer} ({LAYERS[own][0]}) imports {imported} "
                             f"({LAYERS[theirs][0]}), a later layer")
    return found


def test_every_import_goes_down_the_layers():
    found = violations()
    assert not found, "imports against the layer order:\n" + "\n".join(found)


def test_exceptions_are_still_needed():
    used = {(path.relative_to(PACKAGE.parent).as_posix(), m) for path in PACKAGE.rglob("*.py")
            for _, m in imports(path)}
    assert EXCEPTIONS <= used, f"stale exceptions: {sorted(EXCEPTIONS - used)}"


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "soaes_bench"
    for d in ("metrics", "training", "extra"):
        (pkg / d).mkdir(parents=True)
    for f in ("__init__.py", "errors.py", "metrics/__init__.py", "training/__init__.py", "training/loop.py"):
        (pkg / f).write_text("")
    (pkg / "metrics" / "m.py").write_text("from soaes_bench import errors\n\n\ndef f():\n"
                                         "    from ..training import loop\n    import soaes_bench.training\n")
    (pkg / "extra" / "x.py").write_text("")
    assert violations(pkg) == [
        "soaes_bench/extra/x.py: soaes_bench.extra.x is in no layer; add it to LAYERS in tests/test_layers.py",
        "soaes_bench/metrics/m.py:5: soaes_bench.metrics.m (measuring: metrics) imports soaes_bench.training.loop "
        "(measuring: training), a later layer",
        "soaes_bench/metrics/m.py:6: soaes_bench.metrics.m (measuring: metrics) imports soaes_bench.training "
        "(measuring: training), a later layer"]
