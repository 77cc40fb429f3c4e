"""New weights for a running in-process model: where they come from and whether they fit.

``checked_state(model, source, strict)`` turns what ``HFBackend.load_weights`` accepts (a state
dict, a ``torch.nn.Module`` or a checkpoint folder) into (model tensor, new value) pairs, after
checking every name and shape, so that a bad source is refused before any tensor is touched.
``write_safetensors(state, folder)`` writes a state dict as one safetensors file for engines in
another process to load (the vllm and vllm-server backends' ``reload_weights``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from thor_cli.errors import BackendError


def state_of(source: Any, dtype: Any = None) -> tuple[dict[str, Any], str]:
    """A state dict and a description of where it came from (for error messages)."""
    import torch

    if isinstance(source, torch.nn.Module):
        return dict(source.state_dict()), f"a {type(source).__name__}"
    if isinstance(source, Mapping):
        return dict(source), "a state dict"
    if isinstance(source, str | Path):
        from transformers import AutoModelForCausalLM

        # Loaded with transformers (not by reading safetensors by hand) so that checkpoints whose
        # names transformers converts on load still match the running model's names.
        try:
            other = AutoModelForCausalLM.from_pretrained(str(source), dtype=dtype)
        except (OSError, ValueError) as e:
            raise BackendError(f"hf backend: cannot load weights from {str(source)!r} ({e})",
                               "pass a checkpoint folder (config.json + safetensors) of the same model") from e
        return dict(other.state_dict()), repr(str(source))
    raise BackendError(f"hf backend: cannot load weights from a {type(source).__name__}",
                       "pass a state dict, a torch.nn.Module or a checkpoint folder")


def checked_state(model: Any, source: Any, strict: bool) -> tuple[list[tuple[Any, Any]], str]:
    """(model tensor, new value) pairs for ``source``; BackendError if a name or shape does not fit.

    ``strict``: every tensor of the model must be given (tied weights count once).
    """
    state, origin = state_of(source, model.dtype)
    target = model.state_dict()
    unknown = sorted(set(state) - set(target))
    if unknown:
        raise BackendError(f"hf backend: cannot load weights from {origin}: unknown names {unknown[:5]}",
                           "load weights of the same architecture as the running model")
    for name, value in state.items():
        if tuple(value.shape) != tuple(target[name].shape):
            raise BackendError(f"hf backend: cannot load weights from {origin}: shape of {name} is "
                               f"{tuple(value.shape)}, the model's is {tuple(target[name].shape)}",
                               "load weights of the same architecture as the running model")
    if strict:
        given = {t.data_ptr() for k, t in target.items() if k in state}
        missing = sorted(k for k, t in target.items() if k not in state and t.data_ptr() not in given)
        if missing:
            raise BackendError(f"hf backend: {origin} lacks {len(missing)} of the model's tensors "
                               f"(first: {missing[0]})", "pass a full state dict, or strict=False")
    return [(target[name], value) for name, value in state.items()], origin


def write_safetensors(state: Mapping[str, Any], folder: str | Path) -> Path:
    """``state`` as ``folder/model.safetensors`` (replaced atomically: a reader never sees half a
    file); returns its path. Tied tensors (lm_head = embeddings) are written once, under the first
    name: safetensors refuses shared storage, and vLLM re-ties them when it loads."""
    from safetensors.torch import save_file

    seen: set[int] = set()
    tensors = {}
    for name, value in state.items():
        if value.data_ptr() in seen:
            continue
        seen.add(value.data_ptr())
        tensors[str(name)] = value.detach().cpu().contiguous()
    path = Path(folder) / "model.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part")
    save_file(tensors, str(part))
    os.replace(part, path)
    return path
