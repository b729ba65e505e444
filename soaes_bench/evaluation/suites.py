"""Which lm-eval tasks a suite means, and `soaes-bench ls`: the task manager over our task folder (and the user's),
selection by suite, group or task name, and the listing of suites and embedded models.

    soaes-bench ls
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from soaes_bench.config import suggest
from soaes_bench.errors import UserError
from soaes_bench.paths import MODELS_DIR, embedded_model, tasks_dir

SUITES = {"general": ["soaes_general"], "domain": ["soaes_domain"], "all": ["soaes_general", "soaes_domain"]}


def task_manager(include_path=None):
    """lm-eval TaskManager over our task folder (+ the user's), without lm-eval's ~200 built-in folders (fast)."""
    from lm_eval.tasks import TaskManager

    paths = [str(tasks_dir())]
    if include_path:
        p = Path(include_path)
        if not p.is_dir():
            raise UserError(f"--include-path {include_path}: not a directory")
        paths.append(str(p.resolve()))
    return TaskManager(include_path=paths, include_defaults=False)


def select_tasks(tm, suite: str = "all", tasks=None) -> tuple[list[str], str]:
    """Names to pass to lm-eval and the `suite` label for results.json; unknown names raise UserError."""
    if tasks:
        names = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
        for name in names:
            if name not in tm.all_tasks:
                raise UserError(f"--tasks: unknown task {name!r}{suggest(name, tm.all_tasks)}")
        if not names:
            raise UserError("--tasks: no task names given")
        return names, "custom"
    if suite in SUITES:
        return list(SUITES[suite]), suite
    if suite in tm.all_groups:
        return [suite], suite
    raise UserError(f"--suite: unknown suite {suite!r}{suggest(suite, [*SUITES, *tm.all_groups])};"
                    f" choose {', '.join(SUITES)} or a group name")


def task_groups(tm) -> dict[str, str]:
    """task -> the group that lists it (from the index: no data is loaded)."""
    from lm_eval.tasks._index import Kind

    out = {}
    for name, entry in tm.task_index.items():
        if entry.kind == Kind.GROUP and entry.cfg:
            for child in entry.cfg.get("task") or []:
                if isinstance(child, str):
                    out.setdefault(child, name)
    return out


@contextlib.contextmanager
def quiet_lm_eval():
    """lm-eval logs several warnings per task that are expected here (custom_dataset, pre-initialised model,
    group metrics missing in member tasks); keep errors, keep the tqdm progress bars."""
    logger = logging.getLogger("lm_eval")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


def list_suites(include_path=None) -> dict:
    """{group: [{"task", "output_type", "n"}]}: our suites first (tasks in group order), then any other group in
    the user's folder, then "(no group)"."""
    tm = task_manager(include_path)
    groups = task_groups(tm)
    order = [g for g in SUITES["all"] if g in tm.all_groups] + [g for g in tm.all_groups if g not in SUITES["all"]]
    members = {g: [t for t in (tm.task_index[g].cfg or {}).get("task", []) if t in tm.all_subtasks] for g in order}
    members["(no group)"] = [t for t in tm.all_subtasks if t not in groups]
    out: dict[str, list[dict]] = {}
    with quiet_lm_eval():
        for group, names in members.items():
            for name in names:
                try:
                    task = tm.load([name])["tasks"][name]
                    item = {"task": name, "output_type": task.OUTPUT_TYPE, "n": len(task.eval_docs)}
                except Exception as e:  # a broken user task must not hide the others
                    item = {"task": name, "output_type": None, "n": None, "error": str(e).splitlines()[0][:120]}
                out.setdefault(group, []).append(item)
    return out


def list_models() -> list[dict]:
    try:
        default = embedded_model("default").name
    except FileNotFoundError:
        default = None
    models = []
    if MODELS_DIR.is_dir():
        for d in sorted(p for p in MODELS_DIR.iterdir() if (p / "config.json").is_file()):
            size = sum(f.stat().st_size for f in d.glob("*.safetensors"))
            models.append({"name": d.name, "path": str(d), "mb": round(size / 2**20, 1), "default": d.name == default})
    return models


def cli_ls(args) -> int:
    suites = list_suites(getattr(args, "include_path", None))
    for group, items in suites.items():
        print(f"{group}  ({len(items)} tasks)")
        for it in items:
            n = "?" if it["n"] is None else it["n"]
            extra = f"  error: {it['error']}" if it.get("error") else ""
            print(f"  {it['task']:<28} {str(it['output_type']):<22} {n:>6} items{extra}")
    models = list_models()
    print("embedded models:" + ("" if models else f" none in {MODELS_DIR}"))
    for m in models:
        print(f"  {m['name']:<12} {m['mb']:>7} MB  {m['path']}{'  (default for run)' if m['default'] else ''}")
    return 0
