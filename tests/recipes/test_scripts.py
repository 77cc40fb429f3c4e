"""The shell pipeline (shell/pipeline.sh, shell/stages/*.sh) and the Slurm scripts (recipes/slurm):
they parse, they are laid out as promised (set -euo pipefail; sbatch files in labelled sections with
"replace with your paths" markers, launching thor), and a stage script runs at tiny size."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHELL = sorted([ROOT / "shell" / "pipeline.sh", ROOT / "shell" / "setup-slurm.sh", *(ROOT / "shell" / "stages").glob("*.sh")])
SBATCH = sorted((ROOT / "recipes" / "slurm").rglob("*.sbatch"))


@pytest.mark.parametrize("path", SHELL + SBATCH, ids=lambda p: str(p.relative_to(ROOT)))
def test_script_parses_and_stops_on_errors(path: Path) -> None:
    res = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert "set -euo pipefail" in path.read_text()
    assert os.access(path, os.X_OK) or path.suffix == ".sbatch"


@pytest.mark.parametrize("path", SBATCH, ids=lambda p: str(p.relative_to(ROOT)))
def test_sbatch_sections_markers_and_launch(path: Path) -> None:
    text = path.read_text()
    sections = re.findall(r"^# ---- (\w+)", text, re.M)
    assert sections[0] == "resources" and "paths" in sections and "environment" in sections, sections
    assert any(s == "launch" for s in sections), sections
    assert "# ---- paths (replace with your paths) ----" in text and "# replace:" in text
    assert re.search(r"^#SBATCH --job-name=thor-", text, re.M)
    assert re.search(r"^srun .*\bthor\b|^srun .*accelerate launch|^srun --het-group", text, re.M)
    if path.stem in ("eval", "gen"):  # the array scripts
        assert '--shard "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT" --resume' in text
        assert "merge.sbatch" in text


@pytest.mark.slow
def test_eval_stage_script_runs_at_tiny_size(tiny_model_dir: Path, tmp_path: Path) -> None:
    problems = tmp_path / "p.jsonl"
    problems.write_text("".join(json.dumps({"id": f"p{i}", "question": f"What is {i}+1?", "answer": str(i + 1)}) + "\n"
                                for i in range(3)))
    env = {**os.environ, "RECIPES": "recipes/cpu", "OUT": str(tmp_path / "out"), "PYTHONPATH": str(ROOT / "src"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = [str(ROOT / "shell" / "stages" / "eval.sh"), "base", str(tiny_model_dir), str(problems), "--max-tokens", "16"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    recs = [json.loads(x) for x in (tmp_path / "out" / "eval-base.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in recs) == ["p0", "p1", "p2"]
    summary = json.loads((tmp_path / "out" / "eval-base.summary.json").read_text())
    manifest = json.loads((tmp_path / "out" / "eval-base.jsonl.manifest.json").read_text())
    assert summary["benchmarks"] and manifest["config"]["rollout"]["max_tool_calls"] == 4  # from the cpu recipe
