"""The stage runner: what every stage that runs a model with tools shares, below the CLI.

- ``RunOptions`` (options.py): one typed object for backend, sampling, protocol, budgets,
  self-correction and sandbox; the single source of defaults; presets from YAML files.
- ``RunSession`` (session.py): owns the lifetimes of the sandbox pool, backend, tools and engine.
- ``run_samples`` (runner.py): records x k samples -> content keys / shard / resume -> engine ->
  record -> sink. ``thor eval`` runs on it; ``thor gen`` and ``thor rl`` will.

Streams, content keys, shards, resume and manifests live one layer down, in ``records/``
(``records.stream.open_stream`` / ``open_sink``), shared with ``thor exec``, ``thor grade`` and
the training stages.
"""

from thor_cli.stages.options import RunOptions, with_preset
from thor_cli.stages.runner import RunCounts, Sample, load_problems, merge, run_samples
from thor_cli.stages.session import RunSession

__all__ = ["RunCounts", "RunOptions", "RunSession", "Sample", "load_problems", "merge", "run_samples", "with_preset"]
