"""LoRA (peft): the adapter config from thor's keys, and a saved result ``thor eval`` loads.

``lora=true`` trains LoRA adapters (``lora_r``, ``lora_alpha``, ``lora_dropout``,
``lora_target_modules``: "all-linear" or a list of module names). The final model is, with
``lora_merge=true`` (default), the base model with the adapters merged in (a plain checkpoint);
with ``lora_merge=false``, the adapter folder (adapter_config.json naming the base model's path,
plus the tokenizer), which transformers' AutoModelForCausalLM also loads (peft installed).
Merging reloads the base model on the main process's CPU in fp32, so it works the same after
DeepSpeed or FSDP training (whose adapters were gathered when they were saved).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def lora_config(values: dict[str, Any]) -> Any:
    from peft import LoraConfig

    targets = values.get("lora_target_modules", "all-linear")
    return LoraConfig(r=int(values.get("lora_r", 16)), lora_alpha=int(values.get("lora_alpha", 32)),
                      lora_dropout=float(values.get("lora_dropout", 0.05)), target_modules=targets,
                      task_type="CAUSAL_LM")


def merge_adapter(base: str, adapter: Path, out: Path, tokenizer: Any) -> None:
    """Write ``base`` + the adapter in ``adapter``, merged, with ``tokenizer``, to ``out``."""
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM

    stored = getattr(AutoConfig.from_pretrained(base), "dtype", None)  # the base checkpoint's own dtype
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)  # merge in fp32, store as the base
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    if isinstance(stored, torch.dtype):
        merged = merged.to(stored)
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
