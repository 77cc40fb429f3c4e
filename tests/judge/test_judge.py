"""The judge cascade with the scripted backend: what reaches the judge, the cache, bad replies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from thor_cli.backends.scripted import ScriptedBackend
from thor_cli.errors import InputError
from thor_cli.grading import GradeConfig, Grader
from thor_cli.judge import CascadeGrader, Judge, JudgeCache, JudgeItem, parse_verdict

THOR = str(Path(sys.executable).with_name("thor"))

RECORDS = [
    {"question": "1000?", "answer": "1000", "pred": "1,000"},  # rules: yes
    {"question": "2?", "answer": "2", "pred": "3"},  # rules: a decided no (numeric)
    {"question": "How does f change?", "answer": "\\text{increasing}", "pred": "it goes up everywhere"},  # prose
    {"question": "Which one?", "answer": "\\text{the circle}", "pred": "a round shape"},  # prose
]


@pytest.fixture(scope="module")
def tok(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def grader() -> Any:
    with Grader(GradeConfig(workers=1)) as g:
        yield g


def _says_yes_to_up(prompt: str, _ids: list[int], _i: int) -> str:
    if "goes up" in prompt:
        return "Increasing means going up.\nVERDICT: yes\nREASON: both say the function increases"
    return "VERDICT: no\nREASON: a round shape need not be a circle"


def _judge(tok: Any, script: Any, cache: Path | None, model: str = "judge-m") -> tuple[Judge, ScriptedBackend]:
    backend = ScriptedBackend(tokenizer=tok, script=script)
    return Judge(backend, model, cache=JudgeCache(cache) if cache else None), backend


@pytest.mark.parametrize("text,verdict", [
    ("VERDICT: yes\nREASON: same", "yes"), ("verdict: No\nreason: differ", "no"), ("**Verdict:** YES", "yes"),
    ("VERDICT: no ... on reflection VERDICT: yes", "yes"), ("VERDICT: correct", "yes"), ("yes they match", "invalid"),
    ("", "invalid"),
])
def test_parse_verdict(text: str, verdict: str) -> None:
    assert parse_verdict(text)[0] == verdict


def test_cascade_sends_only_what_rules_cannot_decide(tok: Any, grader: Grader, tmp_path: Path) -> None:
    judge, backend = _judge(tok, _says_yes_to_up, tmp_path / "c.jsonl")
    grades = CascadeGrader(grader, judge).grade(RECORDS)
    assert [g.method for g in grades] == ["exact", "numeric", "judge", "judge"]
    assert [g.correct for g in grades] == [True, False, True, False]
    assert len(backend.calls) == 2  # one per undecided record, nothing for the rules' decisions
    prompts = [tok.decode(ids) for ids, _, _ in backend.calls]
    assert not any("1,000" in p or "Candidate answer: 3\n" in p for p in prompts)
    assert any("How does f change?" in p for p in prompts)  # the question reaches the judge
    assert all(p.rstrip().endswith("VERDICT:") for p in prompts)  # the reply is started for the judge
    d = grades[2].to_dict()
    assert d["judge"] == {"verdict": "yes", "reason": "both say the function increases", "model": "judge-m"}
    assert d["detail"] == "rules: string"
    assert judge.cfg.tools == ()  # a tool-free trajectory
    judge.close()


def test_second_run_asks_nothing(tok: Any, grader: Grader, tmp_path: Path) -> None:
    cache = tmp_path / "c.jsonl"
    first, b1 = _judge(tok, _says_yes_to_up, cache)
    g1 = CascadeGrader(grader, first).grade(RECORDS)
    first.close()
    assert len(b1.calls) == 2 and len(cache.read_text().splitlines()) == 2
    second, b2 = _judge(tok, _says_yes_to_up, cache)
    g2 = CascadeGrader(grader, second).grade(RECORDS)
    assert len(b2.calls) == 0 and second.stats == {"asked": 0, "cached": 2, "invalid": 0}
    assert [g.to_dict() for g in g2] == [g.to_dict() for g in g1]
    second.close()
    other, b3 = _judge(tok, _says_yes_to_up, cache, model="another-judge")  # the model is part of the key
    CascadeGrader(grader, other).grade(RECORDS)
    assert len(b3.calls) == 2
    other.close()


def test_same_question_twice_in_a_batch_is_asked_once(tok: Any) -> None:
    judge, backend = _judge(tok, _says_yes_to_up, None)
    item = JudgeItem("it goes up", "\\text{increasing}", "q")
    verdicts = judge.judge([item, item, JudgeItem("a round shape", "\\text{circle}", "q")])
    assert [v.verdict for v in verdicts] == ["yes", "yes", "no"] and len(backend.calls) == 2
    judge.close()


def test_unparseable_reply_is_wrong_and_not_cached(tok: Any, grader: Grader, tmp_path: Path) -> None:
    cache = tmp_path / "c.jsonl"
    judge, _ = _judge(tok, ["Hmm, hard to say."], cache)
    grades = CascadeGrader(grader, judge).grade(RECORDS)
    judge.close()
    assert grades[2].method == "judge" and grades[2].correct is False
    assert grades[2].to_dict()["judge"]["verdict"] == "invalid" and "Hmm" in grades[2].to_dict()["judge"]["reason"]
    assert judge.stats["invalid"] == 2 and not cache.exists()
    again, backend = _judge(tok, _says_yes_to_up, cache)
    assert [g.correct for g in CascadeGrader(grader, again).grade(RECORDS)] == [True, False, True, False]
    assert len(backend.calls) == 2  # asked again: an invalid reply is no answer
    again.close()


def test_reward(tok: Any, grader: Grader) -> None:
    judge, _ = _judge(tok, _says_yes_to_up, None)
    assert CascadeGrader(grader, judge).reward(RECORDS) == [1.0, 0.0, 1.0, 0.0]
    judge.close()


def test_cache_file_errors_name_the_line_and_a_torn_tail_is_skipped(tmp_path: Path) -> None:
    good = json.dumps({"key": "k1", "verdict": "yes", "reason": "r", "model": "m"})
    path = tmp_path / "c.jsonl"
    path.write_text(good + "\n" + '{"key": "k2", "verd')
    cache = JudgeCache(path)
    assert cache.get("k1") is not None and len(cache) == 1
    cache.put("k3", {"verdict": "no", "reason": "", "model": "m"})
    assert JudgeCache(path).get("k3") is not None  # appended on a line of its own
    path.write_text("not json\n" + good + "\n")
    with pytest.raises(InputError, match=r"c\.jsonl:1"):
        JudgeCache(path)


def test_cli_grade_with_scripted_judge(tiny_model_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "verdicts.jsonl"
    args = [THOR, "grade", "--workers", "1", "--judge", str(tiny_model_dir), "--judge-backend", "scripted",
            "--judge-option", 'script=["VERDICT: yes\\nREASON: the same meaning"]', "--judge-cache", str(cache)]
    stdin = "".join(json.dumps(r) + "\n" for r in RECORDS)
    for run in range(2):
        res = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=180)
        assert res.returncode == 0, res.stderr
        out = [json.loads(line)["grade"] for line in res.stdout.splitlines()]
        assert [g["method"] for g in out] == ["exact", "numeric", "judge", "judge"]
        assert [g["correct"] for g in out] == [True, False, True, True]
        assert out[2]["judge"]["model"] == str(tiny_model_dir)
        assert ("asked 2, cached 0" if run == 0 else "asked 0, cached 2") in res.stderr
    assert len(cache.read_text().splitlines()) == 2


def test_cache_whole_last_entry_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"key": "k1", "verdict": "no", "reason": "", "model": "m"}))
    cache = JudgeCache(path)
    cache.put("k2", {"verdict": "yes", "reason": "", "model": "m"})
    again = JudgeCache(path)
    assert again.get("k1") is not None and again.get("k2") is not None


def test_loaded_judge_builds_its_backend_only_when_asked(tiny_model_dir: Path, grader: Grader, tmp_path: Path) -> None:
    judge = Judge.load("scripted", str(tiny_model_dir), backend_options={"script": ["VERDICT: no\nREASON: r"]},
                       cache=JudgeCache(tmp_path / "c.jsonl"))
    CascadeGrader(grader, judge).grade(RECORDS[:2])  # the rules decide both: no model needed
    assert judge.backend is None
    CascadeGrader(grader, judge).grade(RECORDS)
    assert judge.backend is not None and len(judge.backend.calls) == 2
    judge.close()
    with pytest.raises(Exception, match="unknown judge backend"):
        Judge.load("nope", "m")
