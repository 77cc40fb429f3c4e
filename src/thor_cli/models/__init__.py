"""Models without a hub: the registry of pullable names, the local cache, and the resolver.

``resolve_model(spec)`` is what every ``--model`` goes through: a cached name, a local
checkpoint folder or a Hugging Face id. ``pull_model(name)`` caches a registry model as a
transformers checkpoint under ``$THOR_HOME/models`` (default ``~/.cache/thor``).
Heavy imports (torch, transformers) happen only inside the pull functions.
"""

from thor_cli.models.pull import pull_model
from thor_cli.models.registry import MODELS, PullSpec, cached_path, models_dir, thor_home
from thor_cli.models.resolve import describe_model, list_models, resolve_model

__all__ = ["MODELS", "PullSpec", "cached_path", "describe_model", "list_models", "models_dir",
           "pull_model", "resolve_model", "thor_home"]
