"""``RLConfig``: every knob of ``thor rl`` that is not a rollout option (those are ``RunOptions``).

Defaults are THOR's (arXiv 2509.13761, section 3 and appendix E): groups of 16, lr 1e-6, no KL,
clip 0.2 / 0.28, dual-clip c = 3, token-mean loss, NLL weight 0.01 on positive-advantage
tokens, THOR's rollout filters, DAPO dynamic sampling, step-level resampling of the failing cell
(L_suf = 100, 16 continuations) with weight 1. Presets (``presets/rl-*.yaml``) set THOR's,
TAPO's and a CPU-sized run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from thor_cli.errors import UsageError


@dataclass(frozen=True)
class RLConfig:
    # the run
    steps: int = 100  # optimizer steps
    problems_per_step: int = 32  # groups (prompts) per update
    group_size: int = 16  # rollouts per prompt (G)
    learning_rate: float = 1e-6
    warmup_steps: int = 0  # in optimizer steps (epochs x minibatches per step)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    micro_batch: int = 4  # sequences per forward/backward
    minibatches: int = 1  # optimizer steps per generated batch (PPO mini-batches; 1: THOR, DAPO)
    epochs: int = 1  # passes over each generated batch (TRL's num_iterations)
    seed: int = 0
    save_steps: int = 25
    save_trajectories: bool = False  # DIR/trajectories/step-N.jsonl for thor show
    # numerics on CPU (hf generation): null = the trainer's own fp32 weights generate (no copy);
    # bfloat16 = a bf16 copy generates, refreshed after each update (2-3x faster on CPUs with
    # avx512_bf16 or AMX; the importance-sampling correction covers the difference)
    generator_dtype: str | None = None
    autocast_dtype: str | None = None  # the update's forward under torch.autocast (bfloat16); null/float32: fp32
    # on more than one rank: shard weights, gradients and optimizer state with FSDP (sharding.py);
    # also turned on by accelerate launch with an FSDP config. false: plain data parallel
    fsdp: bool = False
    # reward
    reward: str = "correct"  # correct: 1/0 by the grader | tapo: -1 format violation, else a task score in [0, 1]
    tool_call_penalty: float = 0.0  # tapo: per executed call
    # advantages and loss
    adv_scale: str = "std"  # std (GRPO) | none (Dr.GRPO)
    adv_baseline: str = "mean"  # mean | loo (leave-one-out)
    eps_low: float = 0.2
    eps_high: float = 0.28
    dual_clip: float | None = 3.0
    loss_agg: str = "token-mean"  # token-mean | seq-mean-token-mean | seq-mean-token-sum
    beta: float = 0.0  # KL to the initial policy (0: no reference model)
    kl_estimator: str = "k3"
    nll_alpha: float = 0.01  # THOR's NLL term on positive-advantage tokens
    # importance sampling between the generator's log-probs and the trainer's
    is_level: str | None = "token"  # token | sequence | null (off)
    is_mode: str = "truncate"  # truncate | mask
    is_cap: float = 2.0
    # DAPO
    dynamic_sampling: bool = True
    max_gen_batches: int = 3  # generation batches per update at most (DAPO: 10)
    overlong_buffer: int = 0  # 0: no overlong shaping
    overlong_penalty: float = 1.0
    truncated: str = "none"  # none | mask | penalise (judged by the engine's stop_reason)
    # THOR's rollout filters
    filter_failed_cells: bool = True
    filter_min_tokens: int = 0
    filter_require_boxed: bool = True
    min_survivors: int = 2
    # THOR's step level
    step_level: bool = True
    step_samples: int = 16  # continuations per failing cell
    step_suffix_tokens: int = 100  # L_suf
    step_weight: float = 1.0
    max_step_groups: int = 8  # step groups per update at most (cost control)

    def __post_init__(self) -> None:
        checks = [
            (self.steps >= 1, "steps must be >= 1"),
            (self.problems_per_step >= 1 and self.group_size >= 2, "problems_per_step >= 1 and group_size >= 2"),
            (self.micro_batch >= 1, "micro_batch must be >= 1"),
            (self.minibatches >= 1 and self.epochs >= 1, "minibatches and epochs must be >= 1"),
            (self.reward in ("correct", "tapo"), "reward must be correct or tapo"),
            (self.adv_scale in ("std", "none") and self.adv_baseline in ("mean", "loo"),
             "adv_scale is std|none, adv_baseline mean|loo"),
            (self.loss_agg in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum"), "unknown loss_agg"),
            (self.is_level in (None, "token", "sequence") and self.is_mode in ("truncate", "mask"),
             "is_level is token|sequence|null, is_mode truncate|mask"),
            (self.truncated in ("none", "mask", "penalise"), "truncated is none|mask|penalise"),
            (self.step_samples >= 2 or not self.step_level, "step_samples must be >= 2"),
            (self.max_gen_batches >= 1, "max_gen_batches must be >= 1"),
            (self.generator_dtype in (None, "float32", "bfloat16", "float16")
             and self.autocast_dtype in (None, "float32", "bfloat16", "float16"),
             "generator_dtype and autocast_dtype are null|float32|bfloat16|float16"),
        ]
        for ok, msg in checks:
            if not ok:
                raise UsageError(f"rl config: {msg}", "fix the value in --config, the preset or key=value")

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> RLConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            import difflib

            near = {k: difflib.get_close_matches(k, sorted(known), n=1) for k in unknown}
            hint = "; ".join(f"{k}: did you mean {v[0]}?" if v else f"{k}: not an rl setting" for k, v in near.items())
            raise UsageError(f"unknown rl settings {unknown}", hint)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
