"""``thor sft``'s training: TRL's SFTTrainer on pre-tokenized ``input_ids`` + ``labels`` (data.py),
through the shared plumbing (settings, run folder, metrics, LoRA; see train/plumbing).

TRL uses rows that carry ``labels`` as they are (-100 on prompt and tool output); thor has already
cut or skipped rows over ``max_length`` and dropped fully masked ones, so TRL's own truncation and
filtering change nothing. ``packing=true`` uses TRL's best-fit-decreasing packing, which is
padding-free: sequences are concatenated with position ids restarting at each one, and the model
must then keep attention inside each sequence. That is checked on the loaded model before
training (one forward of two short sequences, packed and alone); where packed attention is not
exact, thor trains padded and says so. Packing is faster only with varlen (flash) attention
kernels; with sdpa or eager attention the packed batch is one masked attention, quadratic in its
length (0.36x padding's tokens/s on CPU in bench/sft_bench.py), and thor warns.
"""

from __future__ import annotations

import itertools
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from thor_cli.errors import ThorError
from thor_cli.log import log
from thor_cli.train.sft.data import DataOptions, DataReport, Example, build_examples

DATA_KEYS = {f.name for f in fields(DataOptions)} - {"max_length"}

SFT_DEFAULTS: dict[str, Any] = {
    # TRL SFTConfig / transformers TrainingArguments fields
    "learning_rate": 1e-5,
    "num_train_epochs": 1.0,
    "max_steps": -1,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "lr_scheduler_type": "constant_with_warmup",
    "warmup_steps": 0.05,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "max_length": 4096,
    "packing": False,
    "gradient_checkpointing": False,
    "logging_steps": 1,
    "save_steps": 500,
    "save_total_limit": 2,
    "seed": 0,
    "report_to": "none",
    # data (data.DataOptions)
    "protocol": "thor",
    "truncate": False,
    "include_unfinished": False,
    "include_errors": False,
    "retokenize": True,
    "system_prompt": None,
    "tools": True,
    "correct_only": False,
}


def sft_defaults() -> dict[str, Any]:
    from thor_cli.train.plumbing.settings import COMMON_DEFAULTS

    return {**SFT_DEFAULTS, **COMMON_DEFAULTS}


def sft_setting_names() -> set[str]:
    """Every key thor sft takes in --config, a preset or key=value (SFTConfig's fields and thor's)."""
    from trl import SFTConfig

    from thor_cli.train.plumbing.settings import setting_names

    return setting_names(SFTConfig, DATA_KEYS)


def _trainer_class() -> type:
    from trl import SFTTrainer

    from thor_cli.train.plumbing.run import ThorTrainerMixin

    class ThorSFTTrainer(ThorTrainerMixin, SFTTrainer):  # type: ignore[misc]
        """SFTTrainer that also counts trained tokens (labels != -100), across a resume."""

        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            self.thor_counters = {"trained_tokens": 0, "num_tokens": 0}

        def compute_loss(self, model: Any, inputs: dict[str, Any], *args: Any, **kw: Any) -> Any:
            if model.training:
                # the first label of each row is never predicted (labels shift by one)
                n = (inputs["labels"][..., 1:] != -100).sum()
                self.thor_counters["trained_tokens"] += int(self.accelerator.gather_for_metrics(n).sum().item())
            out = super().compute_loss(model, inputs, *args, **kw)
            if model.training:
                self.thor_counters["num_tokens"] = int(self._total_train_tokens)
            return out

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if "loss" in logs:
                logs["trained_tokens"] = self.thor_counters["trained_tokens"]
            super().log(logs, start_time)

        def restore_counters(self, ckpt: Path) -> None:
            super().restore_counters(ckpt)
            self._total_train_tokens = self.thor_counters["num_tokens"]

    return ThorSFTTrainer


def packing_is_exact(model: Any) -> bool:
    """True when a packed row (position ids restarting per sequence, no attention mask) gives each
    sequence the logits it gets alone: the model keeps attention inside each sequence."""
    import torch

    vocab = int(model.get_input_embeddings().weight.shape[0])
    g = torch.Generator().manual_seed(0)
    a, b = torch.randint(0, vocab, (1, 7), generator=g), torch.randint(0, vocab, (1, 5), generator=g)
    dev = next(model.parameters()).device
    with torch.no_grad():
        alone = [model(input_ids=x.to(dev), use_cache=False).logits for x in (a, b)]
        pos = torch.cat([torch.arange(7), torch.arange(5)])[None].to(dev)
        packed = model(input_ids=torch.cat([a, b], dim=1).to(dev), position_ids=pos, use_cache=False).logits
    both = torch.cat(alone, dim=1)
    return bool(torch.allclose(packed.float(), both.float(), atol=1e-3, rtol=1e-3))


def _dataset(examples: list[Example]) -> Any:
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": [e.input_ids for e in examples], "labels": [e.labels for e in examples]})


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


def run_sft(*, model: str, output: str, inputs: list[str], values: dict[str, Any], resume: bool = False,
            fail_on_error: bool = False, limit: int | None = None) -> dict[str, Any]:
    """Train ``model`` on the records in ``inputs`` into ``output`` (see the package docs); returns
    the summary (data report, training metrics) that also goes into the manifest."""
    from transformers import AutoTokenizer
    from trl import SFTConfig

    from thor_cli.models.resolve import resolve_model
    from thor_cli.records.jsonl import iter_records
    from thor_cli.records.stream import check_resume_config, write_manifest
    from thor_cli.train.plumbing import rundir
    from thor_cli.train.plumbing.lora import lora_config
    from thor_cli.train.plumbing.metrics import METRICS_FILE, check_report_to, use_thor_callbacks
    from thor_cli.train.plumbing.run import end_distributed, load_model, save_final, train
    from thor_cli.train.plumbing.settings import build_args

    out = Path(output)
    report_to = check_report_to(values.get("report_to"))
    fixed = {"output_dir": str(out), "save_strategy": "steps", "logging_strategy": "steps", "disable_tqdm": True,
             "report_to": report_to or "none"}
    args, rest, typed = build_args(SFTConfig, values, own_keys=DATA_KEYS, fixed=fixed)
    opts = DataOptions(max_length=args.max_length, **{k: rest[k] for k in DATA_KEYS if k in rest})
    config = {"model": model, "inputs": list(inputs), "limit": limit, **typed}

    path = resolve_model(model)
    if resume and _is_main():
        check_resume_config(str(out), "sft", config)
    if _is_main():
        ckpt = rundir.prepare(out, resume=resume)
    else:
        done = rundir.checkpoints(out) if resume else []
        ckpt = done[-1][1] if done else None

    if not sys.stderr.isatty():  # datasets' map/filter bars would fill a log
        import datasets

        datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(path)
    records = itertools.islice(iter_records(inputs or ["-"]), limit)
    examples, report = build_examples(records, tokenizer, opts, fail_on_error=fail_on_error)
    if _is_main():
        log.info("sft: %s", report.line())
        _log_skips(report)
    if not examples:
        raise ThorError("no record could be trained on", "see the skip reasons above; trajectories need "
                        "stop_reason answer/eos (or include_unfinished=true)")

    net = load_model(path)
    packing = bool(args.packing)
    if packing and not os.environ.get("ACCELERATE_USE_DEEPSPEED") and not packing_is_exact(net):
        log.warning("sft: this model's attention crosses packed sequences; training padded (packing=false)")
        args.packing = packing = False
    attn = str(getattr(net.config, "_attn_implementation", "") or "")
    if packing and "flash" not in attn:
        # exact, but without varlen kernels the whole packed batch is one masked attention, quadratic in
        # its length: bench/sft_bench.py measured 0.36x the tokens/s of padding on CPU (sdpa)
        log.warning("sft: packing with %s attention is exact but slower than padding (no varlen kernels); "
                    "it pays with flash attention on GPU", attn or "this")
    if _is_main():
        write_manifest(str(out), "sft", config, {"status": "running", "data": report.to_dict()})

    trainer = _trainer_class()(model=net, args=args, train_dataset=_dataset(examples), processing_class=tokenizer,
                               peft_config=lora_config(rest) if rest.get("lora") else None)
    metrics = use_thor_callbacks(trainer, out / METRICS_FILE)
    result = train(trainer, out, ckpt)
    save_final(trainer, out, base=path, tokenizer=tokenizer, lora=bool(rest.get("lora")),
               merge=bool(rest.get("lora_merge", True)))
    summary = {"status": "done", "data": report.to_dict(), "train": result, "packing": packing,
               "last": metrics.last}
    if _is_main():
        write_manifest(str(out), "sft", config, summary)
    end_distributed()
    return summary


def _log_skips(report: DataReport) -> None:
    for reason, where in report.first_skip.items():
        log.info("sft: skipped %d %s, e.g. %s", report.skipped[reason], reason, where)
