"""The main job's pipeline at a tiny size: each stage through the real thor command, each consuming
what the one before produced (data synth -> gen -> gen filter -> sft -> rl -> eval -> show --html).

The actor is the scripted backend (the tiny random model writes no arithmetic to rewrite) on the
tiny model's tokenizer; SFT, RL and eval train and run the tiny model itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

THOR = str(Path(sys.executable).parent / "thor")


def thor(*args: str, timeout: float = 600) -> str:
    r = subprocess.run([THOR, *args], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"thor {' '.join(args)}\n{r.stderr[-3000:]}"
    return r.stderr


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.mark.slow
def test_the_main_job_pipeline_end_to_end(tiny_model_dir: Path, tmp_path: Path) -> None:
    d = tmp_path
    thor("data", "synth", "arithmetic", "--splits", "train=6,train-hard=4,test=3,hard=3", "--seed", "0", "--out-dir", str(d / "data"))
    train = lines(d / "data" / "train.jsonl")
    assert len(train) == 6 and len(lines(d / "data" / "hard.jsonl")) == 3
    assert {r["meta"]["difficulty"] for r in lines(d / "data" / "train-hard.jsonl")} == {"hard"}

    script = d / "actor.json"
    script.write_text(json.dumps(["We compute 12 * 13 = 150.\nThe final answer is 156."]))
    thor("gen", str(d / "data" / "train.jsonl"), "--model", str(tiny_model_dir), "--backend", "scripted",
         "--backend-option", f"script_file={script}", "--critic", "arithmetic", "--no-check-answer", "--tries", "1",
         "--max-tokens", "128", "--workers", "1", "-o", str(d / "gen.jsonl"))
    gen = lines(d / "gen.jsonl")
    assert len(gen) == 6  # every problem kept one try: a cell ran, a boxed answer
    out_turns = [t for t in gen[0]["trajectory"]["turns"] if t["kind"] == "output"]
    assert out_turns and "156" in out_turns[0]["text"]  # the real result, not the actor's 150
    assert {t.get("author", "policy") for t in gen[0]["trajectory"]["turns"]} >= {"critic"}

    err = thor("gen", "filter", str(d / "gen.jsonl"), "--no-correct", "--no-code-quality", "--no-single-call",
               "--min-tokens", "1", "--summary", str(d / "funnel.json"), "-o", str(d / "sft_data.jsonl"))
    kept = lines(d / "sft_data.jsonl")
    assert len(kept) == json.loads((d / "funnel.json").read_text())["kept"] == 6, err

    thor("sft", "--model", str(tiny_model_dir), "--output", str(d / "sft"), "--max-steps", "2", "--batch-size", "2",
         str(d / "sft_data.jsonl"))
    assert (d / "sft" / "config.json").is_file() and (d / "sft" / "metrics.jsonl").is_file()

    thor("rl", "--model", str(d / "sft"), "--output", str(d / "rl"), str(d / "data" / "train-hard.jsonl"), "steps=1",
         "problems_per_step=2", "group_size=2", "max_tokens=24", "workers=1", "max_gen_batches=1")
    assert (d / "rl" / "config.json").is_file() and len(lines(d / "rl" / "metrics.jsonl")) == 1

    thor("eval", str(d / "data" / "test.jsonl"), str(d / "data" / "hard.jsonl"), "--model", str(d / "rl"),
         "--samples", "1", "--max-tokens", "16", "--workers", "1", "-o", str(d / "eval.jsonl"),
         "--summary", str(d / "summary.json"))
    summary = json.loads((d / "summary.json").read_text())
    assert set(summary["benchmarks"]) == {"arith-test", "arith-hard"} and len(lines(d / "eval.jsonl")) == 6

    thor("show", "--html", str(d / "report.html"), f"rl={d / 'eval.jsonl'}", str(d / "summary.json"),
         str(d / "gen.jsonl"), str(d / "funnel.json"), str(d / "sft"), str(d / "rl"))
    page = (d / "report.html").read_text()
    assert "arith-hard" in page and "vega" in page.lower() and len(page) > 100_000  # assets inlined
