"""thor sft end to end on the tiny model: training, outputs, resume, LoRA, packing, errors, thor eval."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

THOR = str(Path(sys.executable).with_name("thor"))
FAST = ["per_device_train_batch_size=4", "learning_rate=1e-3", "warmup_steps=0", "lr_scheduler_type=constant"]


def metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_training_lowers_the_loss_and_writes_a_loadable_run(thor_main: Any, tiny_model_dir: Path, traj_file: Path,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thor_cli.train.plumbing import run as plumbing_run

    fed: list[list[int]] = []
    real_train = plumbing_run.train

    def spy(trainer: Any, out: Path, ckpt: Path | None) -> dict[str, Any]:
        fed.extend(trainer.train_dataset["input_ids"])  # what TRL will batch, after its own preparation
        return real_train(trainer, out, ckpt)

    monkeypatch.setattr(plumbing_run, "train", spy)
    run = tmp_path / "run"
    code, out, err = thor_main("sft", "-m", str(tiny_model_dir), "-o", str(run), str(traj_file), "--max-steps", "12",
                               "--save-steps", "5", *FAST)
    assert code == 0, err
    assert out == ""  # data on stdout only; a training run has none
    records = [json.loads(x) for x in traj_file.read_text().splitlines()][:12]
    assert sorted(fed) == sorted(r["prompt_ids"] + r["completion_ids"] for r in records)  # token-in, token-out
    rows = metrics(run)
    assert [r["step"] for r in rows] == list(range(1, 13))
    for key in ("loss", "learning_rate", "grad_norm", "num_tokens", "trained_tokens", "elapsed_s"):
        assert key in rows[0]
    assert "tokens_per_s" in rows[1] and "trained_tokens_per_s" in rows[1]
    assert rows[-1]["trained_tokens"] > rows[0]["trained_tokens"] > 0
    first, last = sum(r["loss"] for r in rows[:3]) / 3, sum(r["loss"] for r in rows[-3:]) / 3
    assert last < first - 0.2, (first, last)
    manifest = json.loads((tmp_path / "run.manifest.json").read_text())
    assert manifest["stage"] == "sft" and manifest["status"] == "done"
    assert manifest["data"]["skipped"] == {"no_trajectory": 1} and manifest["data"]["used"] == {"ids": 12}
    assert manifest["config"]["learning_rate"] == 0.001  # typed, not the text of the override
    assert manifest["train"]["global_step"] == 12
    assert {p.name for p in run.iterdir() if p.name.startswith("checkpoint-")} == {"checkpoint-10", "checkpoint-12"}
    assert not (run / ".final.part").exists()
    tok = AutoTokenizer.from_pretrained(run)
    assert tok.chat_template and tok.eos_token == "<|im_end|>"
    trained = AutoModelForCausalLM.from_pretrained(run)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert any((a != b).any() for a, b in zip(trained.parameters(), base.parameters(), strict=True))


def test_resume_gives_the_same_next_steps_as_the_uninterrupted_run(thor_main: Any, tiny_model_dir: Path,
                                                                   traj_file: Path, tmp_path: Path) -> None:
    args = ["sft", "-m", str(tiny_model_dir), str(traj_file), "--max-steps", "6", "--save-steps", "3", *FAST,
            "learning_rate=5e-3", "--seed", "3"]  # 12 records / batch 4: the resumed epoch starts mid-data
    whole = tmp_path / "whole"
    assert thor_main(*args, "-o", str(whole))[0] == 0
    # the interrupted run: only what was on disk after step 3 (checkpoint-3, the metrics so far, one torn
    # metrics line written as it died)
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copytree(whole / "checkpoint-3", cut / "checkpoint-3")
    lines = (whole / "metrics.jsonl").read_text().splitlines()
    (cut / "metrics.jsonl").write_text("\n".join(lines[:4]) + "\n" + lines[4][:10])
    shutil.copy(tmp_path / "whole.manifest.json", tmp_path / "cut.manifest.json")
    code, _, err = thor_main(*args, "-o", str(cut), "--resume")
    assert code == 0, err
    a, b = metrics(whole), metrics(cut)
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    for ra, rb in zip(a[3:], b[3:], strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5, abs=1e-6), (ra, rb)
        assert rb["grad_norm"] == pytest.approx(ra["grad_norm"], rel=1e-4)
        assert rb["learning_rate"] == ra["learning_rate"]
        assert rb["trained_tokens"] == ra["trained_tokens"]  # counters continue across the resume
    # another config into the same folder is refused
    code, _, err = thor_main(*args, "-o", str(cut), "--resume", "learning_rate=1e-2")
    assert code == 2 and "another config" in err and "learning_rate" in err


@pytest.mark.parametrize("merge", [True, False])
def test_lora_run_saves_a_model_that_reloads(thor_main: Any, tiny_model_dir: Path, traj_file: Path, tmp_path: Path,
                                             merge: bool) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    run = tmp_path / "lora"
    code, _, err = thor_main("sft", "-m", str(tiny_model_dir), "-o", str(run), str(traj_file), "--lora",
                             "--max-steps", "3", *FAST, "lora_r=4", f"lora_merge={str(merge).lower()}")
    assert code == 0, err
    assert (run / "config.json").is_file() == merge
    assert (run / "adapter_config.json").is_file() == (not merge)
    model = AutoModelForCausalLM.from_pretrained(run)  # merged, or base + adapter through peft
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert not torch.allclose(model(ids).logits, base(ids).logits)
    first = metrics(run)[0]
    assert first["loss"] > 0
    problems = tmp_path / "p.jsonl"
    problems.write_text(json.dumps({"id": "p", "question": "What is 2*7?", "answer": "14"}) + "\n")
    code, out, err = thor_main("eval", "--model", str(run), "--no-tools", "--samples", "1", "--max-tokens", "4",
                               str(problems))
    assert code == 0, err  # thor eval loads it as it is (merged, or base + adapter)
    assert json.loads(out.splitlines()[0])["id"] == "p"


def test_packing_is_exact_and_trains(thor_main: Any, tiny_model_dir: Path, traj_file: Path, tmp_path: Path) -> None:
    """Packed rows give every token the loss it gets padded (the model keeps sequences apart)."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from thor_cli.train.sft.trainer import packing_is_exact

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert packing_is_exact(model)
    rows = [{"input_ids": list(range(10, 30)), "labels": [-100] * 8 + list(range(18, 30))},
            {"input_ids": list(range(40, 52)), "labels": [-100] * 5 + list(range(45, 52))}]
    losses = []
    for free in (False, True):
        batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=free)(rows)
        batch = {k: v for k, v in batch.items() if k in ("input_ids", "labels", "attention_mask", "position_ids")}
        with torch.no_grad():
            out = model(**batch, use_cache=False)
        losses.append(out.loss.item())
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    run = tmp_path / "packed"
    code, _, err = thor_main("sft", "-m", str(tiny_model_dir), "-o", str(run), str(traj_file), "--packing",
                             "--max-steps", "3", "max_length=256", *FAST)
    assert code == 0, err
    assert json.loads((tmp_path / "packed.manifest.json").read_text())["packing"] is True


def test_bad_input_and_settings_are_clear_errors(thor_main: Any, tiny_model_dir: Path, traj_file: Path,
                                                 tmp_path: Path) -> None:
    base = ["sft", "-m", str(tiny_model_dir), "--max-steps", "1"]
    bad = tmp_path / "bad.jsonl"
    rec = json.loads(traj_file.read_text().splitlines()[0])
    rec["trajectory"]["turns"] = "oops"
    bad.write_text(traj_file.read_text().splitlines()[0] + "\n" + json.dumps(rec) + "\n")
    code, _, err = thor_main(*base, "-o", str(tmp_path / "a"), str(bad))
    assert code == 1 and f"{bad}:2: field \"trajectory\"" in err
    code, _, err = thor_main(*base, "-o", str(tmp_path / "b"), str(traj_file), "--fail-on-error")
    assert code == 1 and f"{traj_file}:13: cannot train on this record: no_trajectory" in err
    code, _, err = thor_main(*base, "-o", str(tmp_path / "c"), str(traj_file), "learning_rat=1")
    assert code == 2 and "learning_rat" in err and "did you mean learning_rate" in err
    code, _, err = thor_main(*base, "-o", str(tmp_path / "d"), str(traj_file), "--preset", "gpu-huge")
    assert code == 2 and "cpu" in err and "thor" in err
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "x").write_text("")
    code, _, err = thor_main(*base, "-o", str(tmp_path / "e"), str(traj_file))
    assert code == 2 and "not empty" in err and "--resume" in err
    code, _, err = thor_main(*base, "-o", str(tmp_path / "f"), str(traj_file), "--resume")
    assert code == 2 and "no complete checkpoint" in err
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("learning_rate: 1.0e-4\nwarmup_fraction: 0.1\n")
    code, _, err = thor_main(*base, "-o", str(tmp_path / "h"), str(traj_file), "--config", str(recipe))
    assert code == 2 and "warmup_fraction" in err  # a recipe's keys are checked like the line's
    code, _, err = thor_main(*base, "-o", str(tmp_path / "g"), str(traj_file), "report_to=wandb")
    if code != 0:  # only where wandb is not installed
        assert code == 2 and "pip install wandb" in err


def test_presets_and_precedence(tmp_path: Path) -> None:
    from trl import SFTConfig

    from thor_cli.presets import available, load_preset
    from thor_cli.train.plumbing.settings import build_args, layered, parse_overrides
    from thor_cli.train.sft.trainer import DATA_KEYS, sft_defaults

    assert {"cpu", "thor", "thor-reasoning"} <= set(available("sft"))
    for name in available("sft"):  # every shipped preset builds a valid config
        args, _, typed = build_args(SFTConfig, layered(sft_defaults(), load_preset("sft", name)), own_keys=DATA_KEYS,
                                    fixed={"output_dir": str(tmp_path)})
        assert isinstance(typed["learning_rate"], float)
    thor = load_preset("sft", "thor")
    args, _, _ = build_args(SFTConfig, layered(sft_defaults(), thor), own_keys=DATA_KEYS,
                            fixed={"output_dir": str(tmp_path)})
    assert args.learning_rate == 2e-6 and args.gradient_accumulation_steps == 256 // 4  # one process
    assert args.bf16 is False and args.use_cpu is True  # fp32 on this CPU
    assert args.activation_checkpointing is True  # the preset asks for it
    cpu, _, _ = build_args(SFTConfig, layered(sft_defaults(), load_preset("sft", "cpu")), own_keys=DATA_KEYS,
                           fixed={"output_dir": str(tmp_path)})
    assert cpu.activation_checkpointing is False and cpu.learning_rate == 1e-4 and cpu.per_device_train_batch_size == 4
    config = {"learning_rate": 1e-3, "max_length": 100, "save_steps": 7}
    values = layered(sft_defaults(), config, load_preset("sft", "cpu"), {"max_length": 300},
                     parse_overrides(["save_steps=9"]))
    assert values["learning_rate"] == load_preset("sft", "cpu")["learning_rate"]  # preset > --config
    assert values["max_length"] == 300 and values["save_steps"] == 9  # flags and overrides > preset


@pytest.mark.slow
def test_thor_eval_loads_the_result(tiny_model_dir: Path, traj_file: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[3] / "src")}
    run = tmp_path / "run"
    res = subprocess.run([THOR, "sft", "-m", str(tiny_model_dir), "-o", str(run), str(traj_file), "--max-steps",
                          "2", *FAST], capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr
    assert "sft: 13 records; 12 used" in res.stderr and "1 skipped (1 no_trajectory)" in res.stderr
    assert "train: step 2/2, loss" in res.stderr and res.stdout == ""
    problems = tmp_path / "p.jsonl"
    problems.write_text(json.dumps({"id": "p", "question": "What is 2*7?", "answer": "14"}) + "\n")
    res = subprocess.run([THOR, "eval", "--model", str(run), "--no-tools", "--samples", "1", "--max-tokens", "8",
                          str(problems)], capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr
    rec = json.loads(res.stdout.splitlines()[0])
    assert rec["id"] == "p" and "grade" in rec and rec["trajectory"]["turns"]


@pytest.mark.slow
def test_two_processes_through_accelerate_launch(tiny_model_dir: Path, traj_file: Path, tmp_path: Path) -> None:
    """The multi-process path (DDP over gloo on CPU): one writer of files, gathered token counts."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[3] / "src"), "OMP_NUM_THREADS": "1"}
    run = tmp_path / "ddp"
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    # --multi_gpu is accelerate's torchrun launcher, which starts both ranks on a CPU-only machine too
    # (--cpu alone starts one process and expects mpirun to start the others)
    res = subprocess.run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "thor_cli", "sft", "-m",
                          str(tiny_model_dir), "-o", str(run), str(traj_file), "--max-steps", "3",
                          "per_device_train_batch_size=2", "global_batch_size=4", "learning_rate=1e-3"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stderr.count("sft: 13 records") == 1  # the main process reports
    rows = metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3]
    single = tmp_path / "single"
    res = subprocess.run([THOR, "sft", "-m", str(tiny_model_dir), "-o", str(single), str(traj_file), "--max-steps",
                          "1", "per_device_train_batch_size=4", "learning_rate=1e-3"], capture_output=True,
                         text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert rows[0]["num_tokens"] == metrics(single)[0]["num_tokens"]  # 2 x 2 sequences = one batch of 4
    manifest = json.loads((tmp_path / "ddp.manifest.json").read_text())
    assert manifest["status"] == "done"
    assert manifest["config"]["gradient_accumulation_steps"] == 1  # global 4 = 2 ranks x 2: two processes ran
    assert (run / "config.json").is_file() and not (run / ".final.part").exists()
