"""thor gen's stage: kept and rejected records, the policy's prompt, the real sandbox, resume; the CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from thor_cli.backends.scripted import ScriptedBackend
from thor_cli.gen.stage import GenOptions, generate
from thor_cli.gen.tirgen import TirgenConfig
from thor_cli.grading import GradeConfig
from thor_cli.records.jsonl import OutputSink, iter_records
from thor_cli.stages import RunOptions

THOR = str(Path(sys.executable).parent / "thor")


class Critic:
    name = "test"

    def __init__(self, code: str) -> None:
        self.code = code

    async def rewrite(self, problem: dict[str, Any], step: str, feedback: str | None = None) -> str:
        return f"{step}```python\n{self.code}\n```\n" if "multiply" in step else step


def _gen(tok: Any, out: Path, code: str, *, tries: int = 2, resume: bool = False) -> tuple[Any, ScriptedBackend]:
    def actor(context: str, ids: list[int], call: int) -> str:  # every try starts from the problem alone
        return "So \\boxed{42}." if "multiply six" in context else "I multiply six by seven.\n" + "and a long tail " * 30

    backend = ScriptedBackend(tokenizer=tok, script=actor)
    run = RunOptions(model="scripted", backend="scripted", self_correct=False, timeout=5, memory=512, workers=1,
                     max_tokens=400)
    opts = GenOptions(tirgen=TirgenConfig(step_tokens=40, min_step_tokens=1, tries=tries), keep_rejected=True,
                      grade=GradeConfig(workers=1))
    sink = OutputSink(str(out), resume=resume, stage="gen")
    counts = asyncio.run(generate([{"id": "p", "question": "6*7?", "answer": "42"}], run, opts, sink,
                                  critic=Critic(code), key_config={"t": code}, backend=backend))
    sink.commit()
    return counts, backend


@pytest.mark.slow
def test_a_kept_sample_has_the_real_output_the_policys_prompt_and_a_grade(tok: Any, tmp_path: Path) -> None:
    out = tmp_path / "gen.jsonl"
    counts, backend = _gen(tok, out, "print(6 * 7)")
    (rec,) = [r.data for r in iter_records([str(out)])]
    assert counts.kept == 1 and counts.tries == 1 and rec["grade"]["correct"] is True
    turns = rec["trajectory"]["turns"]
    out_turn = next(t for t in turns if t["kind"] == "output")
    assert out_turn["text"] == "\n42\n```\n" and out_turn["exec"]["status"] == "ok"  # run in the real sandbox
    actor_prompt = backend.calls[0][0]
    assert rec["prompt_ids"] != actor_prompt  # the policy's tool prompt, not the actor's CoT prompt
    assert "integrate natural language reasoning with programs" in tok.decode(rec["prompt_ids"])
    assert rec["gen"]["mode"] == "tirgen" and rec["gen"]["steps"][0]["cells"][0]["stdout"] == "42\n"
    assert rec["token_source"]["tokenizer"] and rec["keys"]["gen"]


@pytest.mark.slow
def test_rejected_tries_are_written_with_their_reason_and_resume_skips_the_unit(tok: Any, tmp_path: Path) -> None:
    out = tmp_path / "gen.jsonl"
    counts, _ = _gen(tok, out, "1/0", tries=2)
    recs = [r.data for r in iter_records([str(out)])]
    assert counts.kept == 0 and counts.rejected == {"abandoned": 2}
    assert [r["gen"]["rejected"] for r in recs] == ["abandoned", "abandoned"]
    assert [r["gen"]["try"] for r in recs] == [0, 1] and len({r["keys"]["gen"] for r in recs}) == 1
    counts2, backend2 = _gen(tok, out, "1/0", tries=2, resume=True)
    assert counts2.tries == 0 and not backend2.calls  # the unit is done: nothing runs again
    assert len(list(iter_records([str(out)]))) == 2


@pytest.mark.slow
def test_thor_gen_cli_with_the_tiny_model_and_the_real_sandbox(tiny_model_dir: Path, tmp_path: Path) -> None:
    """End to end through the real command: problems in, --all writes every try with its reason."""
    problems = tmp_path / "p.jsonl"
    problems.write_text(json.dumps({"id": "a", "question": "What is 12*13?", "answer": "156"}) + "\n")
    out = tmp_path / "gen.jsonl"
    r = subprocess.run([THOR, "gen", str(problems), "--model", str(tiny_model_dir), "--critic", "arithmetic",
                        "--tries", "2", "--max-tokens", "48", "--step-tokens", "16", "--all", "--workers", "1",
                        "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 2 and all(rec["gen"]["rejected"] for rec in recs)  # a random model keeps nothing
    assert "gen: 0 kept of 2 tries" in r.stderr
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    assert manifest["stage"] == "gen" and manifest["config"]["gen"]["tirgen"]["tries"] == 2


@pytest.mark.slow
def test_critic_options_reach_the_critics_engine(tiny_model_dir: Path, tmp_path: Path) -> None:
    """--critic-option goes to the LLM critic's backend (here a scripted one that reads its reply from
    a file), not the actor's, and is part of the run's config."""
    problems = tmp_path / "p.jsonl"
    problems.write_text(json.dumps({"id": "a", "question": "What is 6*7?", "answer": "42"}) + "\n")
    actor, critic = tmp_path / "actor.json", tmp_path / "critic.json"
    actor.write_text(json.dumps(["I multiply six by seven, so the answer is \\boxed{42}."]))
    critic.write_text(json.dumps(["I multiply six by seven:\n```python\nprint(6 * 7)\n```\nso the answer is "
                                  "\\boxed{42}."]))
    out = tmp_path / "gen.jsonl"
    r = subprocess.run([THOR, "gen", str(problems), "--model", str(tiny_model_dir), "--backend", "scripted",
                        "--backend-option", f"script_file={actor}", "--critic", str(tiny_model_dir),
                        "--critic-backend", "scripted", "--critic-option", f"script_file={critic}",
                        "--min-step-tokens", "1", "--tries", "1", "--workers", "1", "-o", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    (step,) = rec["gen"]["steps"]
    assert step["critic"].startswith("I multiply six by seven:\n```python\nprint(6 * 7)")
    assert [c["stdout"] for c in step["cells"]] == ["42\n"] and rec["grade"]["correct"] is True
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    assert manifest["config"]["gen"]["critic"]["backend_options"] == {"script_file": str(critic)}
