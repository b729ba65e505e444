"""Where shipped things live, found from this file, never from the current working directory.

In a source checkout the tasks are at <repo>/tasks; in an installed wheel they are packaged as soaes_bench/_tasks.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ASSETS_DIR = PACKAGE_DIR / "assets"
TOKENIZER_DIR = ASSETS_DIR / "tokenizer"
MODELS_DIR = ASSETS_DIR / "models"
REPO_ROOT = PACKAGE_DIR.parent  # meaningful only in a source checkout


def tasks_dir() -> Path:
    """The shipped lm-eval task folder (contains soaes_general/ and soaes_domain/)."""
    for candidate in (PACKAGE_DIR / "_tasks", REPO_ROOT / "tasks"):
        if (candidate / "soaes_general").is_dir():
            return candidate
    raise FileNotFoundError("soaes-bench task folder not found (neither soaes_bench/_tasks nor ./tasks next to the package)")


def training_dir() -> Path:
    """The training/ folder (recipes, accelerate configs, data); exists in a source checkout."""
    return REPO_ROOT / "training"


def embedded_model(name: str = "default") -> Path:
    """Directory of an embedded model. "default" is what `soaes-bench run` evaluates without --model."""
    default_order = ["target", "base"]
    if name == "default":
        for n in default_order:
            if (MODELS_DIR / n / "config.json").is_file():
                return MODELS_DIR / n
        raise FileNotFoundError(f"no embedded model in {MODELS_DIR}")
    return MODELS_DIR / name


def display_path(p) -> str:
    """A path as reports record it: relative to the working directory when inside it (a checkout's reports then
    hold repository-relative paths, not this machine's), absolute otherwise."""
    import os

    p = Path(p).resolve()
    try:
        return os.path.relpath(p) if p.is_relative_to(Path.cwd()) else str(p)
    except ValueError:
        return str(p)

