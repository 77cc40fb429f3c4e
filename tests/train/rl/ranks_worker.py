"""One rank of test_rl_ranks.py's runs, and the same run on one rank in the test's own process.

As a script (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` set by the test or by
accelerate launch)::

    python ranks_worker.py update MODEL_DIR OUT [--per-rank-counts] [--fsdp]   # update() on a fixed batch
    python ranks_worker.py collect MODEL_DIR OUT                      # collect() on a scripted policy
    python ranks_worker.py loop MODEL_DIR RUN_DIR STEPS [--resume] [--fsdp] [--server URL]  # train_rl, toy reward

``update`` writes ``OUT.rank-R.pt``: {config name: (weights after the update, stats)}; ``collect``
its stats and samples.
``--per-rank-counts`` is the bug the test must catch: each rank normalises its token-mean terms by
its own tokens (as DDP with per-rank means would), not by the mini-batch's over all ranks.
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys
from pathlib import Path
from typing import Any

import torch
from rl_toy import collect_two_problems, e_rate, two_problems_policy
from test_rl_loop import PROBLEMS

from thor_cli.train.rl.collect import RLSample
from thor_cli.train.rl.config import RLConfig
from thor_cli.train.rl.ranks import Ranks

# each config on the same batch; "token" also runs with per-rank counts (one micro-batch per level
# and rank, so a loss call sees a rank's whole share)
CONFIGS: dict[str, dict[str, Any]] = {
    "token": {"micro_batch": 8, "nll_alpha": 0.01, "max_grad_norm": 1e9, "step_weight": 0.5},
    "minibatches": {"micro_batch": 2, "minibatches": 2, "epochs": 2, "nll_alpha": 0.01, "max_grad_norm": 0.05},
    "seq-mean-kl": {"micro_batch": 3, "minibatches": 2, "loss_agg": "seq-mean-token-mean", "beta": 0.05,
                    "nll_alpha": 0.0, "max_grad_norm": 1.0},
}


def batch() -> list[RLSample]:
    """Three trajectory groups of 4 and a step-level group of 4: even samples long, odd ones short,
    so a rank's share (every other sample) holds far more tokens than the other's."""
    g = torch.Generator().manual_seed(1)

    def ids(n: int) -> list[int]:
        return torch.randint(5, 200, (n,), generator=g).tolist()

    out = []
    for i in range(16):
        level, group = ("traj", f"g{i // 4}") if i < 12 else ("step", "step:s0")
        c = 19 if i % 2 == 0 else 3
        mask = [1] * c
        if c > 10:
            mask[4:7] = [0, 0, 0]  # a tool output inside the completion
        reward = float((i * 5 + i // 4) % 3 == 0)
        lp = [-2.0 + 0.1 * j for j in range(c)] if i % 3 == 0 else None  # rollout log-probs on some
        out.append(RLSample(group, level, ids(4 + i % 5), ids(c), mask, lp, reward, train=i != 9))
    return out


def run_update(model_dir: str, ranks: Ranks, *, per_rank_counts: bool = False, fsdp: bool = False,
               names: list[str] | None = None) -> dict[str, tuple[torch.Tensor, dict[str, float]]]:
    from transformers import AutoModelForCausalLM

    from thor_cli.train.rl import update as upd
    from thor_cli.train.rl.sharding import full_state, shard

    if per_rank_counts:
        _count_tokens_per_rank(upd, ranks.world)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    order = [n for n, _ in base.named_parameters()]
    out = {}
    for name in names or list(CONFIGS):
        model, ref = copy.deepcopy(base), copy.deepcopy(base).eval()
        if fsdp:
            shard(model, ranks.world)
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        cfg = RLConfig(**CONFIGS[name])
        stats = upd.update(model, opt, batch(), cfg, temperature=0.9, top_k=0, top_p=1.0, pad_id=0,
                           ref_model=ref if cfg.beta > 0 else None, ranks=ranks)
        state = full_state(model) if fsdp else dict(model.named_parameters())
        out[name] = (torch.cat([state[n].detach().flatten() for n in order]), stats)
    return out


def _count_tokens_per_rank(upd: Any, world: int) -> None:
    """Replace the global token counts of the token-mean terms by this rank's own (x world, so that
    equal shares would still be right): the per-rank normalisation a plain DDP port would do."""
    policy_loss, positive_nll = upd.policy_loss, upd.positive_nll

    def local_policy(logp: Any, old: Any, adv: Any, mask: Any, **kw: Any) -> Any:
        if kw.get("global_tokens") is not None:
            kw["global_tokens"] = float(mask.sum()) * world
        return policy_loss(logp, old, adv, mask, **kw)

    def local_nll(logp: Any, adv: Any, mask: Any, **kw: Any) -> Any:
        kw["global_tokens"] = float((mask * (adv > 0)).sum()) * world
        return positive_nll(logp, adv, mask, **kw)

    upd.policy_loss, upd.positive_nll = local_policy, local_nll


def run_collect(model_dir: str, ranks: Ranks) -> dict[str, Any]:
    """rl_toy's scripted collect, with the policy's ``call`` the request's seed (from its key,
    sample and call index) instead of the backend's call count, which depends on which rank ran
    what; returns its stats (times left out) and samples, sorted (rank order changes the order of
    the gathered rollouts, not their content)."""
    from transformers import AutoTokenizer

    from thor_cli.backends.scripted import ScriptedBackend

    class SeededScript(ScriptedBackend):
        async def generate(self, prompt_ids: list[int], params: Any) -> Any:
            self._n = int(params.seed or 0)  # read by the parent before its first await
            return await super().generate(prompt_ids, params)

    backend = SeededScript(tokenizer=AutoTokenizer.from_pretrained(model_dir), script=two_problems_policy)
    batch = collect_two_problems(backend, ranks)
    samples = sorted((s.group, s.level, s.reward, s.train, s.prompt_ids, s.completion_ids, s.loss_mask)
                     for s in batch.samples)
    return {"stats": {k: v for k, v in batch.stats.items() if not k.startswith("time_")}, "samples": samples,
            "records": len(batch.records), "local_calls": len(backend.calls)}


def loop_settings(model_dir: str, steps: int, *, fsdp: bool = False, server: str | None = None) -> tuple[Any, RLConfig]:
    """The toy loop's settings; ``server``: generate on that vLLM(-speaking) server, every rank attached."""
    from thor_cli.stages import RunOptions

    remote: dict[str, Any] = {} if server is None else {
        "backend": "vllm-server", "backend_options": {"base_url": server, "weight_sync": "reload"}}
    run = RunOptions(model=model_dir, temperature=1.0, max_tokens=24, self_correct=False, workers=1, concurrency=16,
                     **remote)
    cfg = RLConfig(steps=steps, problems_per_step=2, group_size=8, learning_rate=3e-2, dynamic_sampling=False,
                   filter_failed_cells=False, filter_require_boxed=False, min_survivors=1, step_level=False,
                   save_steps=1, micro_batch=4, nll_alpha=0.01, fsdp=fsdp)
    return run, cfg


def run_loop(model_dir: str, out: Path, steps: int, *, resume: bool, fsdp: bool = False,
             server: str | None = None) -> None:
    from thor_cli.train.plumbing import rundir
    from thor_cli.train.rl.trainer import train_rl

    run, cfg = loop_settings(model_dir, steps, fsdp=fsdp, server=server)
    ckpt = rundir.checkpoints(out)[-1][1] if resume else None
    if not resume:
        out.mkdir(parents=True, exist_ok=True)
    asyncio.run(train_rl(PROBLEMS, run, cfg, out, model_path=model_dir, ckpt=ckpt, reward_fn=e_rate))


def main(argv: list[str]) -> None:
    from thor_cli.train.plumbing.run import end_distributed
    from thor_cli.train.rl.ranks import start

    ranks = start()
    if argv[0] == "update":
        res = run_update(argv[1], ranks, per_rank_counts="--per-rank-counts" in argv, fsdp="--fsdp" in argv)
        torch.save(res, f"{argv[2]}.rank-{ranks.rank}.pt")
    elif argv[0] == "collect":
        torch.save(run_collect(argv[1], ranks), f"{argv[2]}.rank-{ranks.rank}.pt")
    else:
        server = argv[argv.index("--server") + 1] if "--server" in argv else None
        run_loop(argv[1], Path(argv[2]), int(argv[3]), resume="--resume" in argv, fsdp="--fsdp" in argv,
                 server=server)
    print(json.dumps({"rank": ranks.rank, "world": ranks.world}), file=sys.stderr)
    end_distributed()


if __name__ == "__main__":
    main(sys.argv[1:])
