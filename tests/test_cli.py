"""The CLI map, the parser and the README agree; bad input is one line and exit code 2."""

import argparse
import importlib
from pathlib import Path

import pytest

from soaes_bench import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def _parser_commands(parser: argparse.ArgumentParser, prefix: str = "") -> set[str]:
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                inner = _parser_commands(sub, f"{prefix}{name} ")
                found |= inner or {f"{prefix}{name}"}
    return found


def test_command_map_matches_parser():
    assert _parser_commands(cli.build_parser()) == set(cli.COMMANDS)


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_handler_exists(command):
    module, func = cli.COMMANDS[command].split(":")
    assert callable(getattr(importlib.import_module(module), func))


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_readme_documents_every_command(command):
    assert f"soaes-bench {command}" in README.read_text(encoding="utf-8")


@pytest.mark.parametrize("argv", [[], ["data"], ["train"]])
def test_missing_action_prints_usage_and_fails(argv, capsys):
    assert cli.main(argv) == 2
    assert "usage: soaes-bench" in capsys.readouterr().err


def test_user_error_is_one_line_exit_2(tmp_path, capsys):
    code = cli.main(["score", "--pred", str(tmp_path / "missing.txt"), "--ref", str(tmp_path / "also-missing.txt")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "missing.txt" in err
