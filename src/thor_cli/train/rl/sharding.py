"""``thor rl``'s trainer ranks with FSDP: weights, gradients and optimizer state sharded over the
ranks (PyTorch's FSDP2, ``fully_shard``), for policies whose full training state does not fit
one rank. ``fsdp=true`` (or ``accelerate launch`` with an FSDP config) on more than one rank.

What changes against plain data parallel (ranks.py):

- **The weights:** each decoder layer is its own FSDP unit, then the whole model; a forward
  all-gathers one layer at a time and a backward reduce-scatters its gradients. thor's update
  sums gradients over ranks (each rank's loss terms are parts of one loss normalised by the
  mini-batch's global counts), so the reduce-scatter sums (``set_gradient_divide_factor(1)``, with
  the sum forced in the communication: gloo has no pre-multiplied sum) instead of averaging.
- **Equal collectives:** every forward and backward is collective, so every rank runs as many
  micro-batches as the rank with the largest share; the others run zero-weight ones
  (update.py's ``_idle_runs`` and ``_idle_pass``).
- **Generation:** a full copy of the weights on every rank (the ``hf`` backend cannot decode
  from shards), refreshed from ``full_state`` after each update; the sharded model never
  generates.
- **Files:** a checkpoint's weights and optimizer state are gathered to full tensors (every rank
  takes part, rank 0 writes): the same model files as a one-rank run; the optimizer state is
  keyed by parameter name where a plain one is keyed by position, and ``optimizer_state_for``
  converts either way, so a run resumes on any number of ranks, sharded or not.
"""

from __future__ import annotations

from typing import Any


def enabled(fsdp: bool, world: int) -> bool:
    """Whether this run shards: ``fsdp=true`` or an accelerate FSDP launch (``--use_fsdp``), on
    more than one rank."""
    from thor_cli.train.rl.ranks import launch_flag

    return world > 1 and (fsdp or launch_flag("ACCELERATE_USE_FSDP"))


def is_sharded(model: Any) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover -- torch without FSDP2
        return False
    return isinstance(model, FSDPModule)


def shard(model: Any, world: int) -> Any:
    """Shard ``model`` (a transformers causal LM, fp32 master weights) over the ``world`` ranks of
    the default process group, in place: each decoder layer, then the root."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard

    device = next(model.parameters()).device
    mesh = init_device_mesh(device.type, (world,))
    layers = _decoder_layers(model)
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)  # a sum over ranks, as sum_grads does
            module.set_force_sum_reduction_for_comms(True)
    return model


def _decoder_layers(model: Any) -> list[Any]:
    """The repeated blocks of a transformers causal LM (``model.model.layers`` for Llama, Qwen,
    Mistral...; else every child ``ModuleList``'s members)."""
    import torch

    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if isinstance(layers, torch.nn.ModuleList):
        return list(layers)
    return [m for lst in model.modules() if isinstance(lst, torch.nn.ModuleList) for m in lst]


def full_state(model: Any, *, rank0_only: bool = False) -> dict[str, Any]:
    """The full (unsharded) state dict, gathered: collective. ``rank0_only``: on the CPU of rank 0
    only (for writing; the others get an empty dict)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=rank0_only))


def full_optimizer_state(model: Any, optimizer: Any) -> dict[str, Any]:
    """The optimizer's state as full tensors on rank 0 (empty elsewhere): collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer,
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(model: Any, optimizer: Any, state: dict[str, Any]) -> None:
    """Put a full optimizer state (as ``full_optimizer_state`` saved it, read by every rank) into
    the sharded optimizer: collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, optim_state_dict=state,
                             options=StateDictOptions(full_state_dict=True))


def grad_norm_value(norm: Any) -> float:
    """``clip_grad_norm_``'s result as a float (a DTensor's full value when sharded)."""
    full = getattr(norm, "full_tensor", None)
    return float(full() if callable(full) else norm)


def optimizer_state_for(state: dict[str, Any], names: list[str], *, by_name: bool) -> dict[str, Any]:
    """A saved optimizer state in the form the loader takes: keyed by parameter name (``by_name``,
    FSDP's full state) or by position in ``names`` (``optimizer.state_dict()``'s), whichever form
    it was saved in. ``names``: the optimizer's parameters in order."""
    keys = list(state.get("state", {})) + [k for g in state.get("param_groups", []) for k in g.get("params", [])]
    if not keys or all(isinstance(k, str) for k in keys) == by_name:
        return state
    if by_name:
        def key(k: Any) -> Any:
            return names[int(k)]
    else:
        index = {n: i for i, n in enumerate(names)}

        def key(k: Any) -> Any:
            return index[k]
    return {"state": {key(k): v for k, v in state.get("state", {}).items()},
            "param_groups": [{**g, "params": [key(k) for k in g["params"]]} for g in state.get("param_groups", [])]}
