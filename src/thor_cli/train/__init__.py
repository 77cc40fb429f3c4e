"""Training: ``thor sft`` and ``thor rl`` (rl/: the loss and advantage math of THOR and TAPO)."""
