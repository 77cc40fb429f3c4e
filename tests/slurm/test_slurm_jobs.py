"""The cpu/ variants of recipes/slurm run end to end under a real (one-node) Slurm: an eval job array
whose shards are merged by thor data merge as a dependent job; an array cancelled with scancel
midway and resubmitted, which ends with every record exactly once; thor sft through
`srun accelerate launch` with two processes on the one node."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SLURM = ROOT / "recipes" / "slurm"
pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.fixture
def jobs(slurm: None, tmp_path: Path, job_env: dict[str, str]) -> Iterator[Any]:
    """``submit(script, *args, wait=..., extra=[sbatch flags])`` -> job id; jobs left are cancelled."""
    ids: list[str] = []

    def submit(script: Path, *args: str, wait: bool = False, extra: tuple[str, ...] = ()) -> str:
        cmd = ["sbatch", "--parsable", "-o", str(tmp_path / "%x-%A_%a.out"), *extra]
        if wait:
            cmd.append("--wait")
        res = subprocess.run([*cmd, str(script), *args], capture_output=True, text=True, cwd=ROOT, env=job_env,
                             timeout=580)
        jid = res.stdout.strip().split(";")[0]
        if jid:
            ids.append(jid)
        assert res.returncode == 0, f"sbatch {script.name}: {res.stderr}\n{logs(tmp_path)}"
        return jid

    yield submit
    for jid in ids:
        subprocess.run(["scancel", jid], capture_output=True, timeout=30)


def logs(d: Path) -> str:
    return "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in sorted(d.glob("*.out")))


def problems(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "question": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n"
                            for i in range(n)))
    return path


def wait_gone(jid: str, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        res = subprocess.run(["squeue", "-h", "-j", jid], capture_output=True, text=True, timeout=30)
        if not res.stdout.strip():
            return
        time.sleep(0.5)
    raise AssertionError(f"job {jid} still in the queue after {timeout} s")


def test_eval_array_then_merge(jobs: Any, tmp_path: Path, tiny_model_dir: Path, job_env: dict[str, str]) -> None:
    data, out = problems(tmp_path, 12), tmp_path / "eval"
    job_env.update(MODEL=str(tiny_model_dir), DATA=str(data), OUT=str(out))
    jid = jobs(SLURM / "cpu" / "eval.sbatch", "--max-tokens", "24", extra=("--array=0-3",))
    jobs(SLURM / "merge.sbatch", str(out), wait=True, extra=(f"--dependency=afterok:{jid}",))
    shards = [lines(Path(f"{out}.shard-{i}.jsonl")) for i in range(4)]
    assert [len(s) for s in shards] == [3, 3, 3, 3]  # problems split by index modulo 4, one sample each
    for i in range(4):
        manifest = json.loads(Path(f"{out}.shard-{i}.jsonl.manifest.json").read_text())
        assert manifest["shard"] == f"{i}/4" and manifest["config"]["model"] == str(tiny_model_dir)
    merged = lines(Path(f"{out}.jsonl"))
    assert sorted(r["id"] for r in merged) == sorted(f"p{i}" for i in range(12))
    assert all("grade" in r and r["trajectory"]["turns"] for r in merged)
    assert "12 read from 4 files, 12 written" in logs(tmp_path)


def test_cancel_midway_and_resubmit_gives_every_record_once(jobs: Any, tmp_path: Path, tiny_model_dir: Path,
                                                            job_env: dict[str, str]) -> None:
    # a scripted model at 0.4 s per call: slow enough to cancel midway, whatever the machine's load
    script = tmp_path / "script.json"
    script.write_text(json.dumps(["Adding them gives the sum.\nThe answer is \\boxed{0}."]))
    data, out = problems(tmp_path, 24), tmp_path / "eval"
    job_env.update(MODEL=str(tiny_model_dir), DATA=str(data), OUT=str(out))
    args = ("--backend", "scripted", "--backend-option", f"script_file={script}", "--backend-option", "delay=0.4",
            "--concurrency", "1", "--samples", "2")
    jid = jobs(SLURM / "cpu" / "eval.sbatch", *args, extra=("--array=0-1",))
    parts = [Path(f"{out}.shard-{i}.jsonl.part") for i in range(2)]
    t0 = time.monotonic()
    while sum(len(p.read_bytes().splitlines()) for p in parts if p.exists()) < 6:
        assert time.monotonic() - t0 < 300, f"no records after 300 s\n{logs(tmp_path)}"
        time.sleep(0.2)
    subprocess.run(["scancel", jid], check=True, timeout=30)
    wait_gone(jid)
    finals = [Path(f"{out}.shard-{i}.jsonl") for i in range(2)]
    assert not all(f.exists() for f in finals), "both shards finished before the cancel: not midway"
    before = sum(len(p.read_bytes().splitlines()) for p in parts if p.exists())
    assert 0 < before < 48

    jid2 = jobs(SLURM / "cpu" / "eval.sbatch", *args, extra=("--array=0-1",))
    jobs(SLURM / "merge.sbatch", str(out), wait=True, extra=(f"--dependency=afterok:{jid2}",))
    for f in finals:
        keys = Counter(r["keys"]["eval"] for r in lines(f))
        assert len(keys) == 24 and set(keys.values()) == {1}, f"{f}: {keys.most_common(2)}"  # 12 x 2, each once
    merged = lines(Path(f"{out}.jsonl"))
    assert Counter((r["id"], r["sample"]) for r in merged) == Counter({(f"p{i}", s): 1 for i in range(24)
                                                                       for s in range(2)})
    assert "resuming;" in logs(tmp_path)  # the second array continued the cancelled one
    assert "duplicate" not in logs(tmp_path)


def test_sft_through_srun_accelerate_launch_two_processes(jobs: Any, tmp_path: Path, tiny_model_dir: Path,
                                                          job_env: dict[str, str]) -> None:
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"What is {i} + {i}?"},
                                                     {"role": "assistant", "content": f"It is {2 * i}."}]}) + "\n"
                            for i in range(16)))
    run = tmp_path / "sft"
    job_env.update(MODEL=str(tiny_model_dir), DATA=str(data), OUT=str(run))
    jobs(SLURM / "cpu" / "sft.sbatch", "--max-steps", "2", "learning_rate=1e-3", wait=True)
    log = logs(tmp_path)
    assert log.count("sft: 16 records") == 1, log  # the main process reports, the other does not
    rows = lines(run / "metrics.jsonl")
    assert [r["step"] for r in rows if "loss" in r] == [1, 2], rows
    manifest = json.loads((tmp_path / "sft.manifest.json").read_text())
    assert manifest["status"] == "done"
    # global batch 4 = 2 per process x 2 processes: no gradient accumulation (1 process would need 2)
    assert manifest["config"]["gradient_accumulation_steps"] == 1
    assert (run / "config.json").is_file()
