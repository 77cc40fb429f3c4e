"""Running a transformers/TRL trainer the thor way: model loading, resume, counters, final save.

A stage (sft, rl) builds its trainer class with ``ThorTrainerMixin`` first in the bases, then::

    ckpt = rundir.prepare(out, resume=resume)              # refuses a non-empty DIR without --resume
    trainer = MyTrainer(model=load_model(path, values), args=..., ...)
    metrics = use_thor_callbacks(trainer, out / METRICS_FILE)
    result = train(trainer, out, ckpt)                     # resume: weights, optimizer, scheduler,
                                                           # RNG, data position, thor's counters
    save_final(trainer, out, base=path, tokenizer=tok, lora=..., merge=...)

Everything that writes files runs on the main process only; the rest runs on every process (so
``accelerate launch`` with DeepSpeed or FSDP works: saving gathers the sharded weights).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from thor_cli.errors import ThorError
from thor_cli.log import log
from thor_cli.train.plumbing import rundir
from thor_cli.train.plumbing.metrics import METRICS_FILE, trim


class ThorTrainerMixin:
    """Counters that survive a resume (``thor_counters``), saved in every checkpoint as
    ``thor_state.json``, which also marks the checkpoint as complete."""

    thor_counters: dict[str, int]

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        super()._save_checkpoint(model, trial)  # type: ignore[misc]
        args, state = self.args, self.state  # type: ignore[attr-defined]
        if args.should_save:
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            rundir.write_state(ckpt, {"step": state.global_step, "counters": dict(self.thor_counters)})

    def restore_counters(self, ckpt: Path) -> None:
        self.thor_counters.update({k: int(v) for k, v in rundir.read_state(ckpt).get("counters", {}).items()})


def load_model(path: str, *, trust_remote_code: bool = False) -> Any:
    """The model to train, in fp32 (master weights; bf16 runs as autocast, see settings.precision)."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise ThorError(f"cannot load model {path!r} ({e})",
                        "pass a checkpoint folder, a cached name (thor models list) or an HF id") from e


def train(trainer: Any, out: Path, ckpt: Path | None) -> dict[str, Any]:
    """Run (or resume) training; returns the trainer's summary plus wall time."""
    if ckpt is not None:
        step = int(rundir.read_state(ckpt).get("step", 0))
        trainer.restore_counters(ckpt)
        if trainer.args.should_save:
            dropped = trim(out / METRICS_FILE, step)
            log.info("train: resuming from %s (step %d)%s", ckpt.name, step,
                     f"; dropped {dropped} metrics lines past it" if dropped else "")
    t0 = time.monotonic()
    result = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt is not None else None)
    metrics = dict(result.metrics)
    metrics["wall_s"] = round(time.monotonic() - t0, 2)
    metrics["global_step"] = int(result.global_step)
    return metrics


def save_final(trainer: Any, out: Path, *, base: str, tokenizer: Any, lora: bool, merge: bool) -> None:
    """The final model in ``out`` with its tokenizer and chat template (see rundir's layout); LoRA
    adapters merged into the base model unless ``merge`` is false."""
    part = out / ".final.part"
    trainer.save_model(str(part))  # every process: DeepSpeed/FSDP gather the weights here
    trainer.accelerator.wait_for_everyone()
    if trainer.args.should_save:
        tokenizer.save_pretrained(str(part))
        if lora and merge:
            from thor_cli.train.plumbing.lora import merge_adapter

            merged = out / ".merged.part"
            merge_adapter(base, part, merged, tokenizer)
            import shutil

            shutil.rmtree(part)
            part = merged
        rundir.publish(part, out)
    trainer.accelerator.wait_for_everyone()


def end_distributed() -> None:
    """Tear the process group down before the interpreter does: left to exit, gloo's threads were
    seen to abort a rank ("terminate called without an active exception") after a finished run."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
