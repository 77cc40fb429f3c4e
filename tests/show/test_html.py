"""`thor show --html` without a browser: input detection, the numbers in the page, the embedded
data, diffs, errors, atomic writes, the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.show.conftest import FUNNEL, Inputs, eval_records, write_jsonl

from thor_cli.errors import InputError, UsageError
from thor_cli.evaluate.metrics import summarize
from thor_cli.evaluate.report import format_metric
from thor_cli.show.filters import Filters
from thor_cli.show.html import assemble, build_report, render_html, resolve_inputs
from thor_cli.show.html.build import json_script
from thor_cli.show.html.inputs import classify
from thor_cli.show.html.rows import clip, row_of

THOR = str(Path(sys.executable).with_name("thor"))


def _data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="thor-data">(.*?)</script>', html, re.S)
    assert m
    return json.loads(m.group(1))


def _table_cells(html: str, benchmark: str, run: str) -> list[str]:
    table = re.search(rf'<table class="bench-table num" data-benchmark="{re.escape(benchmark)}">(.*?)</table>',
                      html, re.S)
    assert table, benchmark
    row = re.search(rf'<tr data-run="{run}"><th>{run}</th>(.*?)</tr>', table.group(1), re.S)
    assert row, run
    return re.findall(r"<td>(.*?)</td>", row.group(1))


def test_inputs_are_recognised_by_content(report_inputs: Inputs, tmp_path: Path) -> None:
    kinds = {i.label: i.kind for i in resolve_inputs(report_inputs.args())}
    assert kinds == {"base": "trajectories", "sft": "trajectories", "gen": "trajectories", "rl": "metrics",
                     "filter": "funnel"}
    summary = tmp_path / "x.summary.json"
    summary.write_text(json.dumps(summarize(eval_records("base")), indent=2))
    assert classify(str(summary))[0] == "eval_summary"
    one_line = tmp_path / "f.json"  # a summary written on one line is still a summary, not records
    one_line.write_text(json.dumps(FUNNEL) + "\n")
    assert classify(str(one_line))[0] == "funnel"


@pytest.mark.parametrize(("content", "message"), [
    ('{"foo": 1}\n', "cannot tell what this file is"),
    ("[1, 2]\n", "expected a JSON object"),
    ("not json\n", "neither JSONL nor a JSON document"),
    ("", "empty file"),
])
def test_unknown_input_names_the_file(tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "mystery.jsonl"
    bad.write_text(content)
    with pytest.raises(InputError, match=message) as e:
        resolve_inputs([str(bad)])
    assert str(bad) in str(e.value)


def test_same_label_twice_and_missing_files_are_usage_errors(report_inputs: Inputs, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="labelled 'base'"):
        resolve_inputs([f"base={report_inputs.base}", f"base={report_inputs.sft}"])
    with pytest.raises(UsageError, match="not found"):
        resolve_inputs([str(tmp_path / "nope.jsonl")])
    with pytest.raises(UsageError, match="without metrics.jsonl"):
        resolve_inputs([str(tmp_path)])


def test_summary_tables_show_evaluates_numbers(report_inputs: Inputs) -> None:
    html = render_html(assemble(resolve_inputs(report_inputs.args())))
    for run in ("base", "sft"):
        m = summarize(eval_records(run))["benchmarks"]["gsm8k"]
        cells = _table_cells(html, "gsm8k", run)
        keys = (("problems", "d"), ("samples", "d"), ("avg@k", "%"), ("pass@k", "%"), ("maj@k", "%"),
                ("best@k_cells", "%"))
        assert cells[:6] == [format_metric(m[k], fmt) for k, fmt in keys]
    # the same numbers by hand: base has 10 right samples of 60, on 10 of 30 problems
    assert _table_cells(html, "gsm8k", "base")[2:4] == ["16.7", "33.3"]
    assert _table_cells(html, "gsm8k", "sft")[2:4] == ["90.0", "90.0"]
    assert "pass@2" in html and "avg@2" in html  # k in the headers


def test_an_eval_summary_file_gives_a_runs_numbers(report_inputs: Inputs, tmp_path: Path) -> None:
    summary = summarize(eval_records("sft"))
    summary["benchmarks"]["gsm8k"]["avg@k"] = 0.5  # differs from the records: the file must win
    path = tmp_path / "eval-sft.summary.json"
    path.write_text(json.dumps(summary, indent=2))
    html = render_html(assemble(resolve_inputs([f"sft={report_inputs.sft}", f"sft={path}"])))
    assert _table_cells(html, "gsm8k", "sft")[2] == "50.0"


def test_browser_rows_carry_what_the_page_shows(report_inputs: Inputs) -> None:
    rep = assemble(resolve_inputs(report_inputs.args()))
    assert len(rep.rows) == 2 * 60 + 3
    base0 = next(r for r in rep.rows if r["run"] == "base" and r["id"] == "gsm8k/test/0" and r["s"] == 0)
    assert base0["c"] is True and base0["f"] is True and base0["x"] == 1
    assert [t["k"] for t in base0["turns"]] == ["text", "code", "output", "text"]
    assert base0["turns"][1]["tx"] == "print(0 * 3)"  # fences gone
    assert base0["turns"][2] == {"k": "output", "tx": "0", "st": "ok"}
    assert "-print(0 * 3 +)" in base0["ret"][0]["diff"] and "+print(0 * 3)" in base0["ret"][0]["diff"]
    gen = next(r for r in rep.rows if r["run"] == "gen")
    diff = gen["gen"][0]["diff"]
    assert "-0 + 5 = 7" in diff and "+print(0 + 5)" in diff and gen["gen"][0]["cells"] == 1


def test_filters_and_limit_select_rows_not_summaries(report_inputs: Inputs) -> None:
    inputs = resolve_inputs(report_inputs.args())
    rep = assemble(inputs, Filters(wrong=True), limit=5)
    assert rep.matched == 50 + 6 and len(rep.rows) == 5 and all(r["c"] is False for r in rep.rows)
    base = next(r for r in rep.runs if r.label == "base")
    assert base.summary == summarize(eval_records("base"))


def test_charts_have_the_data(report_inputs: Inputs) -> None:
    from thor_cli.show.html.charts import all_charts

    charts = {c["id"]: c["spec"] for c in all_charts(assemble(resolve_inputs(report_inputs.args())))}
    assert set(charts) == {"chart-accuracy", "chart-training", "chart-tools", "chart-errors", "chart-lengths",
                           "chart-funnel-0"}
    acc = {(d["run"], d["metric"]): d["value"] for d in charts["chart-accuracy"]["data"]["values"]}
    assert acc[("sft", "avg@k")] == pytest.approx(0.9)
    assert {d["metric"] for d in charts["chart-training"]["data"]["values"]} == {"loss", "reward_mean", "accuracy"}
    assert charts["chart-errors"]["data"]["values"] == [{"run": "base", "error": "SyntaxError", "cells": 12}]
    assert [d["left"] for d in charts["chart-funnel-0"]["data"]["values"]] == [3, 3, 2]  # disabled filter left out


def test_embedded_json_cannot_close_the_script(tmp_path: Path) -> None:
    rec = eval_records("base")[0]
    rec["question"] = "</script><script>alert(1)</script> <!-- & >"
    path = write_jsonl(tmp_path / "evil.jsonl", [rec])
    html = render_html(assemble(resolve_inputs([str(path)])))
    assert "<script>alert(1)" not in html
    assert _data(html)["rows"][0]["q"] == rec["question"]  # still the same text once parsed
    assert json.loads(json_script({"a": "</script>"})) == {"a": "</script>"}


def test_report_is_self_contained(report_inputs: Inputs, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    build_report(report_inputs.args(), str(out))
    html = out.read_text()
    markup = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.S)  # the browser test also checks
    assert not re.search(r"<script[^>]+src=|<link|<img|<iframe", markup)  # that nothing is fetched
    styles = "".join(re.findall(r"<style>(.*?)</style>", html, re.S))
    assert "@import" not in styles and "url(" not in styles
    assert "vegaEmbed" in html and "hljs" in html
    assert out.stat().st_size < 3_000_000


def test_long_outputs_are_clipped() -> None:
    text = "x" * 10_000
    out = clip(text, 100)
    assert len(out) < 200 and "9900 characters cut" in out
    rec = eval_records("base")[0]
    rec["trajectory"]["turns"][2]["text"] = "```output\n" + "y" * 50_000 + "\n```"
    assert len(row_of(rec, "base")["turns"][2]["tx"]) < 3000


def test_a_failed_build_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       report_inputs: Inputs) -> None:
    out = tmp_path / "r.html"
    out.write_text("the old report")
    import thor_cli.show.html.build as build

    def boom(*a: object, **k: object) -> str:
        raise RuntimeError("template broke")

    monkeypatch.setattr(build, "render_html", boom)
    with pytest.raises(RuntimeError):
        build_report(report_inputs.args(), str(out))
    assert out.read_text() == "the old report"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".r.html")] == []


def test_cli_writes_the_report(report_inputs: Inputs, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "report.html"
    res = subprocess.run([THOR, "show", "--html", str(out), "--title", "demo report", *report_inputs.args()],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    assert "runs 3," in res.stderr and "trajectories 123" in res.stderr
    assert "<title>demo report</title>" in out.read_text()


def test_cli_errors(report_inputs: Inputs, tmp_path: Path) -> None:
    bad = tmp_path / "mystery.jsonl"
    bad.write_text('{"foo": 1}\n')
    res = subprocess.run([THOR, "show", "--html", str(tmp_path / "r.html"), str(bad)], capture_output=True, text=True)
    assert res.returncode == 1 and "mystery.jsonl:1" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run([THOR, "show", "--html", str(tmp_path / "r.html"), "--stats", str(report_inputs.base)],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "--stats" in res.stderr
    res = subprocess.run([THOR, "show", "--html", str(tmp_path / "r.html")], capture_output=True, text=True)
    assert res.returncode == 2 and "stdin" in res.stderr
    assert not (tmp_path / "r.html").exists()
