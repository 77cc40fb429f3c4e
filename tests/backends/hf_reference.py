"""What the hf backend's log-probs must equal: one plain forward over prompt + completion."""

from __future__ import annotations

from typing import Any


def reference_logprobs(backend: Any, prompt: list[int], ids: list[int], temperature: float) -> list[float]:
    import torch

    with torch.inference_mode():
        logits = backend.model(input_ids=torch.tensor([prompt + ids])).logits[0, len(prompt) - 1:-1].float()
    logp = torch.log_softmax(logits / temperature, dim=-1)
    return logp.gather(1, torch.tensor(ids)[:, None]).squeeze(1).tolist()
