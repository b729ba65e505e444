"""`soaes-bench score` through cli.main: formats, output, and one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest

from soaes_bench.cli import main
from soaes_bench.errors import UserError
from soaes_bench.metrics import chinese
from soaes_bench.metrics.score import read_items, score_files

PREDS = ["我爱北京天安门", "国有资产流失防止", ""]
REFS = ["我爱北京", "防止国有资产流失", "国有资产"]


def write(path, lines, jsonl=False):
    rows = [json.dumps({"id": i, "text": t}, ensure_ascii=False) for i, t in enumerate(lines)] if jsonl else lines
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    return str(path)


def run(capsys, *argv):
    code = main(["score", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_plain_text_json_output(tmp_path, capsys):
    p, r = write(tmp_path / "p.txt", PREDS), write(tmp_path / "r.txt", REFS)
    code, out, err = run(capsys, "--pred", p, "--ref", r, "--json")
    assert code == 0 and err == ""
    result = json.loads(out)  # exactly one JSON object
    assert list(result) == ["rouge1", "rouge2", "rougeL", "bleu4", "n", "level"]
    assert result["n"] == 3 and result["level"] == "word"
    # pair 1: 6/7, pair 2: 1, pair 3 (empty prediction): 0 -- worked out in tests/test_metrics.py
    assert result["rouge1"] == pytest.approx((600 / 7 + 100 + 0) / 3)
    assert result["bleu4"] == pytest.approx(chinese.bleu4(PREDS, REFS))


def test_jsonl_and_char_level_and_autodetect(tmp_path, capsys):
    p = write(tmp_path / "p.jsonl", PREDS, jsonl=True)
    r = write(tmp_path / "r.data", REFS, jsonl=True)  # no .jsonl suffix: detected from content
    code, out, _ = run(capsys, "--pred", p, "--ref", r, "--json", "--char")
    assert code == 0
    result = json.loads(out)
    assert result["level"] == "char"
    assert result == pytest.approx({**chinese.score(PREDS, REFS, "char"), "level": "char"})
    assert read_items(r) == REFS


def test_table_output(tmp_path, capsys):
    p, r = write(tmp_path / "p.txt", PREDS), write(tmp_path / "r.txt", REFS)
    code, out, _ = run(capsys, "--pred", p, "--ref", r)
    assert code == 0
    rows = dict(line.split() for line in out.strip().splitlines())
    assert rows["rouge1"] == f"{(600 / 7 + 100) / 3:.2f}" and rows["n"] == "3" and rows["level"] == "word"


def test_plain_lines_keep_blank_items_and_crlf(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes("甲\r\n\r\n乙\r\n".encode("utf-8"))
    assert read_items(path) == ["甲", "", "乙"]
    path.write_text('{"text": "甲"}\n不是 JSON\n', encoding="utf-8")  # mixed: plain text, not JSONL
    assert read_items(path) == ['{"text": "甲"}', "不是 JSON"]


def test_score_files_api(tmp_path):
    p, r = write(tmp_path / "p.txt", PREDS), write(tmp_path / "r.txt", REFS)
    assert score_files(p, r)["rougeL"] == pytest.approx(chinese.rouge(PREDS, REFS)["rougeL"])
    with pytest.raises(UserError):
        score_files(p, r, level="sentence")


def error(capsys, *argv):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    return err


def test_line_count_mismatch(tmp_path, capsys):
    p, r = write(tmp_path / "p.txt", PREDS), write(tmp_path / "r.txt", REFS[:2])
    err = error(capsys, "--pred", p, "--ref", r)
    assert "p.txt" in err and "r.txt" in err and "3" in err and "2" in err


def test_missing_and_empty_files(tmp_path, capsys):
    r = write(tmp_path / "r.txt", REFS)
    assert "nope.txt: file not found" in error(capsys, "--pred", str(tmp_path / "nope.txt"), "--ref", r)
    (tmp_path / "empty.txt").write_text("")
    assert "empty.txt: file is empty" in error(capsys, "--pred", str(tmp_path / "empty.txt"), "--ref", r)
    (tmp_path / "blank.jsonl").write_text("\n\n")
    assert "blank.jsonl: no items" in error(capsys, "--pred", str(tmp_path / "blank.jsonl"), "--ref", r)
    assert "is a directory, expected a file" in error(capsys, "--pred", str(tmp_path), "--ref", r)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    assert "not UTF-8" in error(capsys, "--pred", str(tmp_path / "latin1.txt"), "--ref", r)


def test_bad_jsonl_names_file_and_line(tmp_path, capsys):
    r = write(tmp_path / "r.txt", REFS)
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"text": "甲"}\n{"answer": "乙"}\n{"text": "丙"}\n', encoding="utf-8")
    assert "p.jsonl:2: missing `text` field" in error(capsys, "--pred", str(bad), "--ref", r)
    bad.write_text('{"text": "甲"}\n{"text": \n', encoding="utf-8")
    assert "p.jsonl:2: invalid JSON" in error(capsys, "--pred", str(bad), "--ref", r)
    bad.write_text('{"text": "甲"}\n{"text": 3}\n{"text": "丙"}\n', encoding="utf-8")
    assert "p.jsonl:2: `text` must be a string" in error(capsys, "--pred", str(bad), "--ref", r)
