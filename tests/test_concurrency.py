"""One writer per output directory (soaes_bench/lock.py): a second `run`/`train base`/`pipeline`/`profile` into a
directory another live command holds exits 2 at once naming the holder, and the first writer's files stay intact;
a stale lock of a dead process is taken over with a warning; a failed run leaves no empty directory behind."""

import json
import subprocess
import sys

import pytest

from fixtures.bad_inputs import assert_one_error, assets, base_recipe, files_under, pipeline_recipe, run_cli, write_yaml
from soaes_bench.errors import UserError
from soaes_bench.lock import LOCK_NAME, hold

HOLDER = """import sys
from soaes_bench.lock import hold
with hold(sys.argv[1], "soaes-bench run"):
    print("ready", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def held(tmp_path):
    """tmp/out held by another live process (a first writer), with a file it wrote."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        (out / "results.json").write_text('{"first": "writer"}\n', encoding="utf-8")
        yield out, proc.pid
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def _prompts(tmp):
    (tmp / "prompts.txt").write_text("国有资产监督管理\n", encoding="utf-8")
    return tmp / "prompts.txt"


COMMANDS = {
    "run": lambda tmp: ["run", "--model", "constant:", "--tasks", "soaes_domain_bpb", "--limit", "2",
                        "--output", tmp / "out"],
    "run-model": lambda tmp: ["run", "--model", assets() / "init", "--tasks", "soaes_domain_mc", "--limit", "2",
                              "--output", tmp / "out"],
    "train base": lambda tmp: ["train", "base", "--recipe", write_yaml(
        tmp / "r.yaml", base_recipe(output=str(tmp / "out"), work_dir=str(tmp / "work")))],
    "pipeline": lambda tmp: ["pipeline", "--recipe", write_yaml(tmp / "r.yaml", pipeline_recipe()),
                             "--output", tmp / "out"],
    "profile": lambda tmp: ["profile", "--target", assets() / "init", "--draft", assets() / "init",
                            "--prompts", _prompts(tmp), "--output", tmp / "out"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_second_writer_exits_2_naming_the_holder(command, held, tmp_path, capsys):
    out, pid = held
    argv = COMMANDS[command](tmp_path)
    before = files_under(out)
    code = run_cli(capsys, argv)
    assert_one_error(capsys, code, 2, str(out), f"in use by pid {pid} (soaes-bench run, started ")
    assert files_under(out) == before  # the first writer's files (and its lock) intact
    assert json.loads((out / "results.json").read_text(encoding="utf-8")) == {"first": "writer"}
    assert not (tmp_path / "work").exists()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_lock_is_taken_over_with_a_warning(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    pid = _dead_pid()
    (out / LOCK_NAME).write_text(json.dumps({"pid": pid, "command": "soaes-bench run", "started": "yesterday"}))
    code = run_cli(capsys, COMMANDS["run"](tmp_path))
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err
    warnings = [line for line in err.splitlines() if "stale lock" in line]
    assert len(warnings) == 1 and warnings[0] == (
        f"soaes-bench: warning: {out}: taking over the stale lock of pid {pid} (soaes-bench run, started yesterday), "
        "which is no longer running")
    assert (out / "results.json").is_file() and not (out / LOCK_NAME).exists()


@pytest.mark.parametrize("model", ["constant:", "tiny"])
def test_failed_run_leaves_no_empty_directory(model, tmp_path, capsys, monkeypatch):
    from soaes_bench.evaluation import constant
    from soaes_bench.evaluation import run as run_mod

    def boom(*args, **kwargs):
        raise UserError("evaluation failed half-way")

    monkeypatch.setattr(constant, "evaluate_constant", boom)
    monkeypatch.setattr(run_mod, "evaluate", boom)
    model = str(assets() / "init") if model == "tiny" else model
    out = tmp_path / "a" / "b" / "out"
    code = run_cli(capsys, ["run", "--model", model, "--tasks", "soaes_domain_mc", "--limit", "2", "--output", out])
    err = capsys.readouterr().err  # (loading the model shows a progress bar: the work had started)
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == "soaes-bench run: error: evaluation failed half-way"
    assert not (tmp_path / "a").exists()  # every directory the run created is gone again
    # into an existing directory: kept, with what was there, and no lock file left behind
    out.mkdir(parents=True)
    (out / "old.txt").write_text("old", encoding="utf-8")
    assert run_cli(capsys, ["run", "--model", model, "--tasks", "soaes_domain_mc", "--output", out]) == 2
    assert files_under(tmp_path / "a") == {"b/out/old.txt": b"old"}


def test_lock_in_process_and_under_accelerate(tmp_path, monkeypatch):
    d = tmp_path / "x"
    with hold(d, "first") as lock:
        assert json.loads((d / LOCK_NAME).read_text())["command"] == "first" and lock is not None
        with pytest.raises(UserError, match=r"in use by pid \d+ \(first, started "):
            with hold(d, "second"):
                pass
    assert not d.exists()  # created by the lock, empty again: removed
    monkeypatch.setenv("RANK", "1")  # a non-main process of `accelerate launch` writes under its launch's lock
    with hold(d, "rank 1") as lock:
        assert lock is None and not d.exists()
