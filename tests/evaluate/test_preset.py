"""`thor eval --preset paper`: the paper's settings win over --config and defaults; flags win over it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

THOR = str(Path(sys.executable).with_name("thor"))


def _config_of_run(tmp_path: Path, *flags: str) -> dict:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("temperature: 1.0\ntop_p: 0.5\nsamples: 2\n")
    out = tmp_path / "ev.jsonl"
    # the model does not exist: the run stops after writing its manifest (the resolved config)
    res = subprocess.run([THOR, "eval", "--model", str(tmp_path / "no-model"), "--config", str(cfg), "-b", "gsm8k",
                          "--limit", "1", "-o", str(out), *flags], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "not found" in res.stderr
    return json.loads((tmp_path / "ev.jsonl.manifest.json").read_text())["config"]


def test_without_preset_the_config_file_decides(tmp_path: Path) -> None:
    c = _config_of_run(tmp_path)
    assert (c["rollout"]["temperature"], c["rollout"]["top_p"], c["samples"]) == (1.0, 0.5, 2)


def test_preset_paper_overrides_config_and_flags_on_the_line_win(tmp_path: Path) -> None:
    c = _config_of_run(tmp_path, "--preset", "paper", "--top-p", "0.9")
    assert (c["rollout"]["temperature"], c["rollout"]["top_p"], c["samples"]) == (0.6, 0.9, 4)
    assert c["rollout"]["max_tokens"] == 4096 and c["rollout"]["max_tool_calls"] == 10
