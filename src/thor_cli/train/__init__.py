"""Training stages (sft, rl) on one set of plumbing: checkpoints, resume, metrics, presets, launch."""
