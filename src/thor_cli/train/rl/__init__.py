"""The math of ``thor rl``: pure functions on tensors, lists and record dicts (no model, no trainer).

- ``advantages``  GRPO / Dr.GRPO / leave-one-out advantages over explicit group ids
- ``losses``      PPO clipped policy loss (clip-higher, dual-clip), aggregation, KL, positive NLL
- ``importance``  rollout-vs-trainer importance-sampling correction (token/sequence, truncate/mask)
- ``dapo``        dynamic sampling (a selector and an accumulator), overlong reward shaping
- ``filters``     THOR's rollout filters (failed cell, too short, no final \\boxed, group survivors)
- ``step``        THOR's step level: the cut before the first failing cell, step reward, step mask
- ``rewards``     TAPO's reward: format violations, exact / fuzzy / numeric scores, tool budget
"""
