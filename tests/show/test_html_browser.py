"""`thor show --html` in a real browser: headless Chromium (Debian's) loads the report from disk;
the tests read the tables, type in the search box, click the filters, page, open trajectories,
and save a screenshot to runs/test-artifacts/ (or $THOR_TEST_ARTIFACTS)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from tests.show.conftest import Inputs, eval_records, gen_records

from thor_cli.evaluate.metrics import summarize
from thor_cli.evaluate.report import format_metric
from thor_cli.show.html import build_report

pytestmark = pytest.mark.browser
TOTAL = 2 * 60 + 3  # base + sft eval rows + gen rows


def _wait(driver: Any, cond: Any, timeout: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(cond)


def _count(driver: Any) -> str:
    return str(driver.find_element("id", "count").text)


def _visible_rows(driver: Any) -> list[list[str]]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#rows tbody tr'))"
        ".map(tr => Array.from(tr.children).map(td => td.textContent));")


def _until_count(driver: Any, n: int) -> None:
    _wait(driver, lambda d: _count(d).startswith(f"{n} of {TOTAL} "))


@pytest.fixture
def page(chromium: Any, report_inputs: Inputs, tmp_path: Path) -> Any:
    out = tmp_path / "report.html"
    build_report(report_inputs.args(), str(out))
    chromium.get(out.as_uri())
    _wait(chromium, lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    return chromium


def test_summary_tables_and_charts(page: Any) -> None:
    for run in ("base", "sft"):
        m = summarize(eval_records(run))["benchmarks"]["gsm8k"]
        cells = page.execute_script(
            f"return Array.from(document.querySelectorAll("
            f"'table.bench-table[data-benchmark=\"gsm8k\"] tr[data-run=\"{run}\"] td')).map(td => td.textContent);")
        assert cells[2:4] == [format_metric(m["avg@k"], "%"), format_metric(m["pass@k"], "%")]
    pivot = page.execute_script("return Array.from(document.querySelectorAll('#pivot tr[data-run]'))"
                                ".map(tr => tr.firstElementChild.textContent);")
    assert pivot == ["base", "sft", "gen"]
    # every chart drawn by vega-embed as an SVG, with nothing fetched from anywhere
    _wait(page, lambda d: d.execute_script(
        "return Array.from(document.querySelectorAll('div.chart')).every(c => c.dataset.rendered === '1')"))
    n_svg = page.execute_script("return document.querySelectorAll('div.chart svg').length")
    assert n_svg == 6
    assert page.execute_script("return performance.getEntriesByType('resource').length") == 0
    logs = [e for e in page.get_log("browser") if e.get("level") == "SEVERE"]
    assert logs == []


def test_search_filters_and_pages(page: Any) -> None:
    _until_count(page, TOTAL)
    assert page.find_element("id", "page").text == "page 1 of 3"
    assert len(_visible_rows(page)) == 50
    page.find_element("id", "next").click()
    page.find_element("id", "next").click()
    assert page.find_element("id", "page").text == "page 3 of 3"
    assert len(_visible_rows(page)) == TOTAL - 100
    assert page.find_element("id", "next").get_attribute("disabled") is not None

    search = page.find_element("id", "search")
    search.send_keys("gsm8k/test/7")
    _until_count(page, 4)  # two runs x two samples
    assert {r[1] for r in _visible_rows(page)} == {"gsm8k/test/7"}
    search.clear()
    search.send_keys("What is 2 + 5")  # a question of one gen record
    _until_count(page, 1)
    search.clear()
    search.send_keys(" ")
    _until_count(page, TOTAL)

    from selenium.webdriver.support.ui import Select

    wrong = sum(r["grade"]["correct"] is False for run in ("base", "sft") for r in eval_records(run))
    Select(page.find_element("id", "f-correct")).select_by_value("wrong")
    _until_count(page, wrong)
    assert {r[4] for r in _visible_rows(page)} == {"wrong"}
    Select(page.find_element("id", "f-correct")).select_by_value("correct")
    _until_count(page, TOTAL - wrong)
    Select(page.find_element("id", "f-correct")).select_by_value("all")
    page.find_element("id", "f-failed").click()
    failed = sum(bool(r["trajectory"]["retries"]) for r in eval_records("base"))
    _until_count(page, failed)
    assert {r[0] for r in _visible_rows(page)} == {"base"} and {r[9] for r in _visible_rows(page)} == {"yes"}
    page.find_element("id", "f-failed").click()
    page.find_element("id", "f-rewrites").click()
    _until_count(page, len(gen_records()))
    page.find_element("id", "f-rewrites").click()
    Select(page.find_element("id", "f-run")).select_by_value("sft")
    _until_count(page, 60)


def test_open_a_trajectory_with_a_self_correction(page: Any, tmp_path: Path, artifact_dir: Path) -> None:
    page.find_element("id", "f-corrected").click()
    _wait(page, lambda d: len(_visible_rows(d)) > 0)
    page.find_element("css selector", "#rows tbody tr").click()
    detail = page.find_element("id", "detail")
    assert detail.is_displayed()
    code = detail.find_elements("css selector", "pre.code code.hljs")  # highlight.js ran
    assert code and code[0].find_elements("css selector", "span")  # tokens coloured
    outputs = detail.find_elements("css selector", "pre.tool-output")
    assert outputs and outputs[0].text.strip().isdigit()
    diff = detail.find_element("css selector", ".retry pre.diff")
    assert diff.find_elements("css selector", "span.del") and diff.find_elements("css selector", "span.add")
    assert "SyntaxError" in detail.find_element("css selector", ".retry").text
    shot = tmp_path / "report-self-correction.png"
    assert page.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    shutil.copy(shot, artifact_dir / shot.name)


def test_open_a_critic_rewrite(page: Any, tmp_path: Path, artifact_dir: Path) -> None:
    page.find_element("id", "f-rewrites").click()
    _until_count(page, 3)
    page.find_element("css selector", "#rows tbody tr").click()
    box = page.find_element("css selector", "#detail .rewrite")
    adds = [e.text for e in box.find_elements("css selector", "span.add")]
    dels = [e.text for e in box.find_elements("css selector", "span.del")]
    assert any("print(" in a for a in adds) and any("=" in d for d in dels)
    assert page.find_elements("css selector", "#detail .turn-text.critic")  # the critic's text set apart
    page.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / "report.png"
    page.set_window_size(1300, 2600)
    assert page.save_screenshot(str(shot))
    shutil.copy(shot, artifact_dir / shot.name)
    page.set_window_size(1300, 1000)
