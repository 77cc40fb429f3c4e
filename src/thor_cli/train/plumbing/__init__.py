"""What every training stage shares: settings (defaults < --config < --preset < overrides, into a
TRL config; device and precision), the run folder (checkpoints, resume, final model, manifest),
per-step metrics and progress, LoRA, and running a trainer. Stages: ``train/sft``, ``train/rl``.

Multi-GPU and multi-node runs go through ``accelerate launch -m thor_cli <stage> ...`` with a
config from ``recipes/accelerate/`` (DeepSpeed ZeRO-2/3, FSDP); a single process needs none.
"""

from thor_cli.train.plumbing.metrics import METRICS_FILE, MetricsCallback, check_report_to, use_thor_callbacks
from thor_cli.train.plumbing.run import ThorTrainerMixin, load_model, save_final, train
from thor_cli.train.plumbing.settings import COMMON_DEFAULTS, build_args, layered, parse_overrides

__all__ = ["COMMON_DEFAULTS", "METRICS_FILE", "MetricsCallback", "ThorTrainerMixin", "build_args",
           "check_report_to", "layered", "load_model", "parse_overrides", "save_final", "train",
           "use_thor_callbacks"]
