"""DAPO's data-side pieces: dynamic sampling and overlong reward shaping.

Dynamic sampling keeps only groups whose rewards are not all equal (an all-equal group has zero
advantages and only dilutes the batch), and keeps generating until the batch has its target
number of groups or ``max_gen_batches`` generation batches were used (DAPO: 10). Here that is a
pure selector plus an accumulator that the trainer feeds one generation batch at a time; it is
deterministic (groups are kept in the order they arrive; surplus groups are the latest ones).

Overlong shaping (DAPO's soft overlong punishment) counts only tokens the model sampled
(``completion_mask == 1``): tool output is not the model's verbosity, and TRL's
``get_soft_overlong_punishment`` counting it penalises trajectories for long tool results.
Whether a completion was truncated comes from an explicit flag (the engine's stop_reason), never
from "the last token is not EOS" (wrong for a trajectory that ends on tool output).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from thor_cli.errors import ThorError, UsageError

T = TypeVar("T")
TruncatedMode = Literal["none", "mask", "penalise"]
TRUNCATED_STOPS = ("max_tokens", "context_overflow")


def is_mixed(rewards: Sequence[float], tol: float = 0.0) -> bool:
    """True when the rewards are not all equal (max - min > tol); a group of one is not mixed.

    >>> is_mixed([1, 0, 1]), is_mixed([1, 1]), is_mixed([0.5])
    (True, False, False)
    """
    return len(rewards) > 1 and max(rewards) - min(rewards) > tol


def mixed_group_ids(rewards: Sequence[float], group_ids: Sequence[Hashable], tol: float = 0.0) -> list[Hashable]:
    """The ids (first-seen order) of the groups whose rewards are not all equal.

    >>> mixed_group_ids([1, 0, 1, 1, 0.5], ["a", "a", "b", "b", "c"])
    ['a']
    """
    if len(rewards) != len(group_ids):
        raise ThorError(f"{len(rewards)} rewards for {len(group_ids)} group ids", "pass one of each per sample")
    by: dict[Hashable, list[float]] = {}
    for r, g in zip(rewards, group_ids, strict=True):
        by.setdefault(g, []).append(float(r))
    return [g for g, rs in by.items() if is_mixed(rs, tol)]


@dataclass
class Group(Generic[T]):
    """One prompt's (or one step cut's) samples and their rewards."""

    gid: Hashable
    rewards: list[float]
    samples: list[T] = field(default_factory=list)


@dataclass
class DynamicStats:
    kept: int = 0  # mixed groups in the returned batch
    dropped: int = 0  # groups dropped because their rewards were all equal
    surplus: int = 0  # mixed groups beyond the target (the last batch overshot); not returned
    gen_batches: int = 0  # generation batches used
    full: bool = False  # the batch reached its target number of groups


class DynamicSampler(Generic[T]):
    """Gathers mixed groups across generation batches until ``target_groups`` are kept or
    ``max_gen_batches`` were used.

        sampler = DynamicSampler(target_groups=32, max_gen_batches=10)
        while not sampler.done:
            sampler.add(generate_and_score_one_batch())
        groups, stats = sampler.take()   # the first 32 mixed groups (fewer if the budget ran out)

    DAPO raises when the budget runs out short; here the short batch is returned with
    ``stats.full == False`` and the trainer decides (train on it, or skip the step).
    """

    def __init__(self, target_groups: int, max_gen_batches: int = 10, *, tol: float = 0.0) -> None:
        if target_groups < 1 or max_gen_batches < 1:
            raise UsageError(f"dynamic sampling needs target_groups >= 1 and max_gen_batches >= 1 (got "
                             f"{target_groups}, {max_gen_batches})", "e.g. target_groups=32, max_gen_batches=10")
        self.target = target_groups
        self.max_gen_batches = max_gen_batches
        self.tol = tol
        self._reset()

    def _reset(self) -> None:
        self.kept: list[Group[T]] = []
        self.stats = DynamicStats()

    @property
    def done(self) -> bool:
        return len(self.kept) >= self.target or self.stats.gen_batches >= self.max_gen_batches

    def add(self, groups: Iterable[Group[T]]) -> None:
        """Take one generation batch's groups (keeps the mixed ones, counts the rest)."""
        if self.done:
            raise ThorError("add() after the dynamic-sampling batch is complete", "call take() first")
        self.stats.gen_batches += 1
        for g in groups:
            if is_mixed(g.rewards, self.tol):
                self.kept.append(g)
            else:
                self.stats.dropped += 1

    def take(self) -> tuple[list[Group[T]], DynamicStats]:
        """The batch (at most ``target_groups``, in arrival order) and its stats; starts over."""
        out, stats = self.kept[:self.target], self.stats
        stats.kept, stats.surplus = len(out), len(self.kept) - len(out)
        stats.full = len(out) >= self.target
        self._reset()
        return out, stats


# ---- overlong reward shaping ------------------------------------------------------------------

def model_tokens(completion_mask: Sequence[int]) -> int:
    """Tokens the model sampled (mask 1); tool output (mask 0) does not count."""
    return sum(1 for x in completion_mask if x == 1)


def is_truncated(stop_reason: str | None) -> bool:
    """Was the completion cut short by a length limit (the engine's stop_reason)?"""
    return stop_reason in TRUNCATED_STOPS


def overlong_penalty(n_tokens: int, *, max_len: int, buffer: int, factor: float = 1.0) -> float:
    """DAPO's soft overlong punishment: 0 up to ``max_len - buffer`` tokens, then falling linearly
    to ``-factor`` at ``max_len``, and ``-factor`` beyond it.

    >>> overlong_penalty(900, max_len=1000, buffer=200), overlong_penalty(1000, max_len=1000, buffer=200)
    (-0.5, -1.0)
    """
    if buffer <= 0 or buffer > max_len:
        raise UsageError(f"the overlong buffer must be in (0, max_len] (buffer={buffer}, max_len={max_len})",
                         "DAPO uses buffer 4096 with max_len 20480; TAPO 1024")
    over = n_tokens - (max_len - buffer)
    if over <= 0:
        return 0.0
    return -factor * min(over / buffer, 1.0)


def shape_overlong(reward: float, completion_mask: Sequence[int], *, truncated: bool, max_len: int, buffer: int,
                   factor: float = 1.0, truncated_mode: TruncatedMode = "none") -> tuple[float, bool]:
    """(shaped reward, train on this sample?).

    The length penalty is applied to every sample. A truncated one is then handled by
    ``truncated_mode``: ``"none"`` leaves it at that; ``"mask"`` keeps its reward (it still
    counts in its group's statistics) but it gets no loss (DAPO's overlong filtering);
    ``"penalise"`` gives it the full penalty ``-factor`` in place of the length penalty (a
    trajectory cut by context overflow may have few model tokens of its own).
    """
    if truncated_mode not in ("none", "mask", "penalise"):
        raise UsageError(f"unknown truncated-completion mode {truncated_mode!r}", "use none, mask or penalise")
    if truncated and truncated_mode == "penalise":
        return reward - factor, True
    shaped = reward + overlong_penalty(model_tokens(completion_mask), max_len=max_len, buffer=buffer, factor=factor)
    return shaped, not (truncated and truncated_mode == "mask")


def shape_record(rec: dict[str, Any], reward: float, **kw: Any) -> tuple[float, bool]:
    """``shape_overlong`` on a rollout record: its ``completion_mask`` and its trajectory's
    ``stop_reason`` (truncated when ``max_tokens`` or ``context_overflow``)."""
    mask = rec.get("completion_mask")
    if not isinstance(mask, list):
        raise ThorError(f"record {rec.get('id', '?')!r} has no completion_mask",
                        "roll out with token ids kept (not --drop-ids)")
    stop = (rec.get("trajectory") or {}).get("stop_reason")
    return shape_overlong(reward, mask, truncated=is_truncated(stop), **kw)
