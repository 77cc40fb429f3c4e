"""thor rl on two data-parallel ranks (gloo on CPU) against one: the same update on the same batch,
the same run end to end (with --resume), one writer of files, and the CLI under accelerate launch."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ranks_worker  # beside this file (tests/train/rl is on sys.path)
import torch

from thor_cli.train.rl.ranks import Ranks

WORKER = str(Path(__file__).with_name("ranks_worker.py"))
STANDIN = str(Path(__file__).with_name("vllm_standin.py"))
SRC = str(Path(__file__).parents[3] / "src")
ACCELERATE = str(Path(sys.executable).with_name("accelerate"))
THOR = str(Path(sys.executable).with_name("thor"))


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _two_ranks(*args: str) -> None:
    """Run ranks_worker.py ARGS as ranks 0 and 1 of a gloo group."""
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, WORKER, *args], env=_env(
        RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port),
        stderr=subprocess.PIPE, text=True) for r in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    for p, err in zip(procs, errs, strict=True):
        assert p.returncode == 0, err[-3000:]


def test_one_rank_collectives_are_identities() -> None:
    r = Ranks()
    assert r.main and r.shard([1, 2, 3]) == [1, 2, 3] and r.gather([4]) == [4] and r.broadcast("x") == "x"
    assert Ranks(1, 2).shard(list(range(5))) == [1, 3] and not Ranks(1, 2).main
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 3.0)
    r.sum_grads([p])
    assert p.grad.tolist() == [3.0, 3.0]


def test_a_deepspeed_launch_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from thor_cli.errors import UsageError
    from thor_cli.train.rl.ranks import start

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(UsageError, match="deepspeed"):
        start()


def _gap(a: torch.Tensor, b: torch.Tensor, base: torch.Tensor) -> float:
    """Largest difference of two updates, relative to the larger update's largest move."""
    return float((a - b).abs().max() / torch.maximum((a - base).abs().max(), (b - base).abs().max()))


@pytest.mark.slow
def test_two_ranks_give_the_one_rank_update(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The same batch on 1 and 2 ranks: the same weights after the update (token-mean with the NLL
    term and a step-level group; mini-batches and epochs with a binding gradient clip; seq-mean
    with a KL term), the same stats, and both ranks' weights identical. The batch gives one rank
    six times the other's tokens, so normalising by per-rank token counts moves the weights far
    off: the test fails that way (checked here with that bug put in)."""
    from transformers import AutoModelForCausalLM

    base = torch.cat([p.detach().flatten() for p in
                      AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).parameters()])
    one = ranks_worker.run_update(str(tiny_model_dir), Ranks())
    out = tmp_path / "upd"
    _two_ranks("update", str(tiny_model_dir), str(out))
    two = [torch.load(f"{out}.rank-{r}.pt", weights_only=False) for r in range(2)]
    for name, (w1, s1) in one.items():
        w2, s2 = two[0][name]
        assert torch.equal(w2, two[1][name][0]), name  # the ranks stay in step
        assert _gap(w1, w2, base) < 1e-4, (name, _gap(w1, w2, base))
        assert float((w1 - base).abs().max()) > 1e-3, name  # the update moved the weights
        assert s1.keys() == s2.keys(), name
        for k in ("loss", "grad_norm", "traj_tokens", "step_tokens", "traj_samples", "optimizer_steps", "nll"):
            if k in s1:
                assert s2[k] == pytest.approx(s1[k], rel=1e-4, abs=1e-7), (name, k)
    assert one["minibatches"][1]["grad_norm"] > 0.05  # the clip bound: it must use the global norm

    _two_ranks("update", str(tiny_model_dir), str(out), "--per-rank-counts")
    wrong = torch.load(f"{out}.rank-0.pt", weights_only=False)["token"][0]
    assert _gap(one["token"][0], wrong, base) > 0.05, _gap(one["token"][0], wrong, base)


@pytest.mark.slow
def test_fsdp_ranks_give_the_one_rank_update(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The same batch on one rank and on two FSDP ranks (weights, gradients and optimizer state
    sharded; gradients summed by the reduce-scatter; the rank with fewer micro-batches runs idle
    ones so the collectives pair up): the same weights after the update in every configuration,
    a binding global gradient clip included, and the same stats."""
    from transformers import AutoModelForCausalLM

    base = torch.cat([p.detach().flatten() for p in
                      AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).parameters()])
    one = ranks_worker.run_update(str(tiny_model_dir), Ranks())
    out = tmp_path / "fsdp"
    _two_ranks("update", str(tiny_model_dir), str(out), "--fsdp")
    two = [torch.load(f"{out}.rank-{r}.pt", weights_only=False) for r in range(2)]
    for name, (w1, s1) in one.items():
        w2, s2 = two[0][name]
        assert torch.equal(w2, two[1][name][0]), name  # both ranks gather the same full weights
        assert _gap(w1, w2, base) < 1e-4, (name, _gap(w1, w2, base))
        for k in ("loss", "grad_norm", "traj_tokens", "step_tokens", "optimizer_steps", "nll"):
            if k in s1:
                assert s2[k] == pytest.approx(s1[k], rel=1e-4, abs=1e-7), (name, k)


def _metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _one_trainer(model_dir: Path, out: Path, server: str | None = None) -> list[dict[str, Any]]:
    """The toy loop's 3 steps in this process, uninterrupted, on one plain rank: the reference."""
    from thor_cli.train.plumbing import rundir
    from thor_cli.train.rl.trainer import train_rl

    rundir.prepare(out, resume=False)
    run, cfg = ranks_worker.loop_settings(str(model_dir), 3, server=server)
    asyncio.run(train_rl(ranks_worker.PROBLEMS, run, cfg, out, model_path=str(model_dir), ckpt=None,
                         reward_fn=ranks_worker.e_rate))
    return _metrics(out)


def _same_run(ref: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """Step by step, the same rollouts' reward, the same loss and gradient norm."""
    assert [r["step"] for r in rows] == [r["step"] for r in ref] == [1, 2, 3]
    for a, b in zip(ref, rows, strict=True):
        assert a["trajectories"] == b["trajectories"] == 16
        assert b["reward_mean"] == pytest.approx(a["reward_mean"], abs=1e-6), a["step"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-3, abs=1e-6), a["step"]
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-3), a["step"]


@pytest.mark.slow
def test_two_ranks_run_the_one_rank_loop_and_resume(tiny_model_dir: Path, tmp_path: Path) -> None:
    """train_rl with a toy reward: 2 ranks (stopped after step 2, resumed to 3) give the metrics of
    one rank's uninterrupted run: the same rollouts (each rank generates its share, seeds from the
    keys), the same loss and gradient norm. Only rank 0 writes."""
    ref = _one_trainer(tiny_model_dir, tmp_path / "single")
    two = tmp_path / "two"
    _two_ranks("loop", str(tiny_model_dir), str(two), "2")
    assert [r["step"] for r in _metrics(two)] == [1, 2]
    _two_ranks("loop", str(tiny_model_dir), str(two), "3", "--resume")
    _same_run(ref, _metrics(two))
    assert sorted(p.name for p in two.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    assert (two / "config.json").is_file() and not list(two.glob(".*.part"))


@pytest.mark.slow
def test_fsdp_ranks_run_the_one_rank_loop_and_resume(tiny_model_dir: Path, tmp_path: Path) -> None:
    """One run, three launches: step 1 on one plain rank, step 2 resumed on two FSDP ranks (the
    position-keyed optimizer state loaded into the shards), step 3 resumed on one plain rank again
    (from the FSDP checkpoint gathered by both ranks, its optimizer state keyed by name). It gives
    the uninterrupted one-rank run's metrics at every step (each FSDP rank generates with its full
    copy, refreshed from the shards after every update) and its final weights."""
    from transformers import AutoModelForCausalLM

    single = tmp_path / "single"
    ref = _one_trainer(tiny_model_dir, single)
    two = tmp_path / "two"
    ranks_worker.run_loop(str(tiny_model_dir), two, 1, resume=False)
    _two_ranks("loop", str(tiny_model_dir), str(two), "2", "--resume", "--fsdp")
    assert json.loads((two / "checkpoint-2" / "trainer_state.json").read_text())["global_step"] == 2
    ranks_worker.run_loop(str(tiny_model_dir), two, 3, resume=True)
    _same_run(ref, _metrics(two))
    # the final model, gathered from the shards: the one-rank run's (Adam's normalised steps
    # magnify float noise in tiny gradients, so compared as a fraction of the largest move)
    w0, w1, w2 = (torch.cat([p.detach().flatten() for p in AutoModelForCausalLM.from_pretrained(
        d, dtype=torch.float32).parameters()]) for d in (tiny_model_dir, single, two))
    assert float((w1 - w0).abs().max()) > 1e-2  # the run moved the weights
    assert _gap(w1, w2, w0) < 0.01, _gap(w1, w2, w0)  # measured 0.0012


@contextlib.contextmanager
def _standin_server(model_dir: Path, tmp_path: Path) -> Iterator[str]:
    """vllm_standin.py (vLLM's routes on the hf backend) in a process of its own; yields its URL."""
    port_file = tmp_path / f"standin-{_free_port()}.port"
    proc = subprocess.Popen([sys.executable, STANDIN, str(model_dir), str(port_file)], env=_env(),
                            stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            if port_file.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert port_file.exists(), proc.stderr.read() if proc.poll() is not None else "no port after 60 s"
        yield f"http://127.0.0.1:{port_file.read_text()}"
    finally:
        proc.kill()
        proc.communicate()


def _server_stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/stats", timeout=30) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_ranks_share_one_vllm_server(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Two trainer ranks attached to one generation server (the vLLM API, here a stand-in on the
    hf backend): each rank sends its share of the rollouts, rank 0 alone pushes each update
    (one reload per step, the others wait for it), and the run gives the metrics of one trainer
    against a fresh server of its own: the same rollouts, so the server followed the weights."""
    with _standin_server(tiny_model_dir, tmp_path) as url:
        ref = _one_trainer(tiny_model_dir, tmp_path / "single", server=url)
        one = _server_stats(url)
    two = tmp_path / "two"
    with _standin_server(tiny_model_dir, tmp_path) as url:
        _two_ranks("loop", str(tiny_model_dir), str(two), "3", "--server", url)
        both = _server_stats(url)
    assert one["reloads"] == both["reloads"] == 3 and both["completions"] == one["completions"] > 0
    assert len({r["reward_mean"] for r in ref}) > 1  # the policy moved: a server left behind would show
    _same_run(ref, _metrics(two))


def test_ranks_without_a_shared_server_are_refused(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several ranks each starting a vLLM server of their own is a mistake: the error says to attach."""
    from thor_cli.errors import UsageError
    from thor_cli.train.rl import trainer

    monkeypatch.setattr(trainer, "current", lambda: Ranks(0, 2))
    run, cfg = ranks_worker.loop_settings(str(tiny_model_dir), 1)
    run = dataclasses.replace(run, backend="vllm-server", backend_options={})
    with pytest.raises(UsageError, match="without base_url") as e:
        asyncio.run(trainer.train_rl([], run, cfg, Path("unused"), model_path=str(tiny_model_dir), ckpt=None))
    assert "base_url" in (e.value.hint or "")


@pytest.mark.slow
def test_thor_rl_through_accelerate_launch(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The CLI on two processes: one log line and one writer of files, every rank's rollouts in
    them; --resume continues on two ranks."""
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "question": f"What is {i}+1?", "answer": str(i + 1)}) + "\n"
                            for i in range(4)))
    out = tmp_path / "rl"
    launch = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
              "-m", "thor_cli", "rl", "-m", str(tiny_model_dir), "-o", str(out), str(data), "problems_per_step=2",
              "group_size=4", "max_tokens=16", "workers=1", "dynamic_sampling=false", "filter_require_boxed=false",
              "min_survivors=1", "step_level=false", "save_steps=1", "save_trajectories=true"]
    res = subprocess.run([*launch, "steps=1"], capture_output=True, text=True, timeout=600, env=_env())
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stderr.count("on 2 ranks") == 1 and res.stderr.count("rl step 1/1") == 1
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    assert manifest["config"]["ranks"] == 2
    res = subprocess.run([*launch, "steps=2", "--resume"], capture_output=True, text=True, timeout=600, env=_env())
    assert res.returncode == 0, res.stderr[-3000:]
    rows = _metrics(out)
    assert [r["step"] for r in rows] == [1, 2] and all(r["trajectories"] == 8 for r in rows)
    # rank 0 writes every rank's rollouts (the random model earns no reward here: the update is
    # skipped; the tests above train)
    trajs = [json.loads(line) for line in (out / "trajectories" / "step-2.jsonl").read_text().splitlines()]
    assert sorted((t["rl"]["group"], t["rl"]["sample"]) for t in trajs) == sorted(
        {(t["rl"]["group"], s) for t in trajs for s in range(4)})
    assert (out / "checkpoint-2" / "thor_state.json").is_file() and (out / "config.json").is_file()


@pytest.mark.slow
def test_two_ranks_collect_the_one_rank_batch(tiny_model_dir: Path, tmp_path: Path) -> None:
    """collect on 2 ranks (each rolls out half, both gather): the same filters, dynamic sampling
    (a second generation batch) and step-level groups as on one rank, the same batch on both."""
    one = ranks_worker.run_collect(str(tiny_model_dir), Ranks())
    out = tmp_path / "col"
    _two_ranks("collect", str(tiny_model_dir), str(out))
    two = [torch.load(f"{out}.rank-{r}.pt", weights_only=False) for r in range(2)]
    s = one["stats"]
    assert s["gen_batches"] == 2 and s["filtered"] > 0 and s["step_groups_kept"] > 0  # every path ran
    assert {x[1] for x in one["samples"]} == {"step"} and {x[2] for x in one["samples"]} == {0.0, 1.0}
    for t in two:
        assert t["samples"] == one["samples"] and t["stats"] == one["stats"] and t["records"] == one["records"]
    assert 0 < two[0]["local_calls"] < one["local_calls"]  # each rank generated a share
    assert two[0]["local_calls"] + two[1]["local_calls"] == one["local_calls"]
