"""Training stages (sft, rl) on one set of plumbing: checkpoints, resume, metrics, presets, launch.

rl/ holds the loss and advantage math of THOR and TAPO (pure functions)."""
