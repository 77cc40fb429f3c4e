"""--sandbox-url (sandbox_url in a recipe): a stage's cells run on a `thor exec serve` server, as the
sandbox node of recipes/slurm/rl.sbatch does, not in a pool of the stage's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _eval(tiny_model_dir: Path, tmp_path: Path, url: str) -> dict:
    script = tmp_path / "script.json"
    script.write_text(json.dumps(["Compute.\n```python\nimport os\nprint(6 * 7, os.getpid() > 0)\n```\n```output",
                                  "So \\boxed{42}"]))
    problems = tmp_path / "p.jsonl"
    problems.write_text(json.dumps({"id": "p", "question": "What is 6*7?", "answer": "42"}) + "\n")
    res = subprocess.run([sys.executable, "-m", "thor_cli", "eval", "--model", str(tiny_model_dir), "--backend",
                          "scripted", "--backend-option", f"script_file={script}", "--samples", "1",
                          "--no-self-correct", "--sandbox-url", url, str(problems)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.splitlines()[0])


def _outputs(rec: dict) -> list[str]:
    return [t["text"] for t in rec["trajectory"]["turns"] if t["kind"] == "output"]


@pytest.mark.slow
def test_cells_run_on_the_sandbox_server(tiny_model_dir: Path, tmp_path: Path) -> None:
    sock = tmp_path / "sb.sock"
    server = subprocess.Popen([sys.executable, "-m", "thor_cli", "exec", "serve", "--unix", str(sock), "--workers", "1"],
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    try:
        for _ in range(600):
            if sock.exists():
                break
            time.sleep(0.1)
        assert sock.exists(), "the sandbox server did not start"
        rec = _eval(tiny_model_dir, tmp_path, f"unix:{sock}")
        assert any("42 True" in o for o in _outputs(rec)), rec["trajectory"]
        assert rec["grade"]["correct"] is True
    finally:
        server.terminate()
        server.wait(30)
    # with the server gone, the same run's cell fails as a sandbox error: the cells did go to the URL
    rec = _eval(tiny_model_dir, tmp_path, f"unix:{sock}")
    assert not any("42 True" in o for o in _outputs(rec))
    assert "sandbox" in json.dumps(rec).lower()
