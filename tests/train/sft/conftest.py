"""Fixtures of the SFT tests: trajectory records from the rollout engine, and a CLI runner."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # sft_helpers

from sft_helpers import rollout, thor_cell, write_jsonl  # noqa: E402


@pytest.fixture(scope="session")
def traj_file(tmp_path_factory: pytest.TempPathFactory, tok: Any) -> Path:
    """12 finished THOR trajectories (one cell each, ids from the tiny model's tokenizer) and one
    problem record without a trajectory."""
    recs: list[dict[str, Any]] = [
        rollout(tok, [thor_cell(f"print({i * 7})", f"Compute {i}*7.\n"), f"So \\boxed{{{i * 7}}}"],
                question=f"What is {i}*7?")
        for i in range(12)
    ]
    recs.append({"id": "no-traj", "question": "2+2?"})
    return write_jsonl(tmp_path_factory.mktemp("sft-data") / "traj.jsonl", recs)


@pytest.fixture
def thor_main(capsys: pytest.CaptureFixture[str]) -> Any:
    """Run ``thor ARGS`` in this process; returns (exit code, stdout, stderr)."""
    from thor_cli.cli.app import main

    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as e:
            main(list(args))
        out, err = capsys.readouterr()
        return int(e.value.code or 0), out, err

    return run
