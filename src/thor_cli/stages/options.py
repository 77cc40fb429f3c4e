"""``RunOptions``: everything a model-with-tools run needs, in one typed object, and its defaults.

The one source of defaults for every stage that runs a model with tools (eval today; gen and rl
next): the CLI's shared flags (``cli/rollout_opts.py``) take their defaults from here, presets
(``thor_cli/presets/<stage>-<name>.yaml``) override them, and a stage builds its ``RolloutConfig``,
sandbox config, content-key config and ``RunSession`` from one of these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from thor_cli.errors import UsageError


@dataclass(frozen=True)
class RunOptions:
    """A model, a backend, sampling, a tool protocol, budgets, self-correction and the sandbox.

    Defaults are THOR's evaluation settings (paper, section 4): T 0.6, top_p 1, 4096 tokens,
    10 tool calls, 4 self-corrections backing off 500 tokens; a 10 s, 1 GiB sandbox cell.
    """

    model: str = ""
    backend: str = "hf"
    backend_options: dict[str, Any] = field(default_factory=dict)  # engine options the backend's factory takes
    # sampling
    temperature: float = 0.6
    top_p: float = 1.0
    top_k: int = -1
    seed: int = 0
    # protocol, tools and budgets
    protocol: str = "thor"
    no_tools: bool = False
    max_tokens: int = 4096
    max_tool_calls: int = 10
    max_output_chars: int = 2048
    system_prompt: str | None = None
    # THOR's self-correction
    self_correct: bool = True
    max_corrections: int = 4
    backoff_tokens: int = 500
    # the run
    concurrency: int = 64
    keep_ids: bool = True  # the engine keeps token ids, masks and log-probs (a stage may drop them after)
    # the sandbox (python tool) and the search tool
    timeout: float = 10.0
    memory: int = 1024
    workers: int | None = None
    sandbox_url: str | None = None  # a thor exec serve server (another node) instead of a local pool
    search_corpus: str | None = None
    search_url: str | None = None
    # the openai backend's server
    base_url: str | None = None
    api_key: str | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_values(cls, **values: Any) -> RunOptions:
        """From option values (a command's parsed flags); names that are not options are a bug."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise UsageError(f"unknown run options {unknown}", f"known: {', '.join(cls.names())}")
        return cls(**values)

    def replace(self, **changes: Any) -> RunOptions:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def tools(self) -> tuple[str, ...]:
        """The protocol's tools (python; search too under TAPO when a corpus or retriever is
        given); none with no_tools."""
        if self.no_tools:
            return ()
        from thor_cli.rollout.protocols import get_protocol

        return get_protocol(self.protocol).available_tools(search=bool(self.search_corpus or self.search_url))

    def rollout_config(self) -> Any:
        """The engine's ``RolloutConfig`` (checks the values: a UsageError names the flag)."""
        from thor_cli.rollout import RolloutConfig

        return RolloutConfig(
            protocol=self.protocol, max_tool_calls=self.max_tool_calls, max_tokens=self.max_tokens,
            temperature=self.temperature, top_p=self.top_p, top_k=self.top_k, self_correct=self.self_correct,
            max_corrections=self.max_corrections, backoff_tokens=self.backoff_tokens,
            max_output_chars=self.max_output_chars, system_prompt=self.system_prompt, seed=self.seed,
            keep_ids=self.keep_ids, tools=self.tools)

    def sandbox_config(self) -> Any:
        from thor_cli.sandbox import SandboxConfig

        sb: dict[str, Any] = {"timeout": self.timeout, "memory_mb": self.memory}
        if self.workers:
            sb["workers"] = self.workers
        return SandboxConfig(**sb)

    def key_config(self) -> dict[str, Any]:
        """What determines a run's results: content keys hash it, --resume compares it."""
        key = {"model": self.model, "backend": self.backend, "rollout": self.rollout_config().to_dict(),
               "cell_timeout": self.timeout}
        if self.backend_options:  # engine options can change what is sampled (dtype, a script)
            key["backend_options"] = dict(self.backend_options)
        return key


def with_preset(values: dict[str, Any], stage: str, name: str | None, given: set[str]) -> dict[str, Any]:
    """``values`` with preset ``name`` of ``stage`` applied to every option not in ``given`` (the
    flags on the command line: they win over a preset, which wins over defaults and --config)."""
    if name is None:
        return dict(values)
    from thor_cli.presets import load_preset

    out = dict(values)
    for k, v in load_preset(stage, name).items():
        if k not in given:
            out[k] = v
    return out
