"""Launch recipes: every shipped accelerate config parses and documents its launch line."""

from __future__ import annotations

from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "accelerate"


@pytest.mark.parametrize(("name", "kind"), [("zero2", "DEEPSPEED"), ("zero3", "DEEPSPEED"), ("fsdp", "FSDP")])
def test_accelerate_configs_load_and_say_how_to_launch(name: str, kind: str) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    path = RECIPES / f"{name}.yaml"
    cfg = load_config_from_file(str(path))
    assert str(cfg.distributed_type).endswith(kind)
    assert cfg.mixed_precision == "bf16"
    if kind == "DEEPSPEED":
        assert cfg.deepspeed_config["zero_stage"] == int(name[-1])
    text = path.read_text()
    assert f"accelerate launch --config_file recipes/accelerate/{name}.yaml -m thor_cli sft" in text
    assert "--machine_rank $SLURM_PROCID" in text  # the multi-node line


def test_python_dash_m_thor_cli_is_the_thor_command() -> None:
    import runpy

    with pytest.raises(SystemExit) as e:
        import sys

        argv, sys.argv = sys.argv, ["thor", "--version"]
        try:
            runpy.run_module("thor_cli", run_name="__main__")
        finally:
            sys.argv = argv
    assert e.value.code == 0
