"""Every rl preset loads and validates against RLConfig and RunOptions (a typo in a key fails)."""

from __future__ import annotations

import pytest

from thor_cli.errors import UsageError
from thor_cli.presets import available
from thor_cli.train.rl.run import resolve, split_settings


@pytest.mark.parametrize("name", available("rl"))
def test_every_rl_preset_validates(name: str) -> None:
    cfg, run = split_settings(resolve(name, {}, []))
    assert cfg.group_size >= 2 and run["temperature"] == 1.0


def test_the_presets_are_there_and_overrides_win() -> None:
    assert {"thor", "thor-reasoning", "tapo", "cpu"} <= set(available("rl"))
    cfg, run = split_settings(resolve("thor", {"steps": 5}, ["steps=7", "max_tokens=256"]))
    assert (cfg.steps, run["max_tokens"], cfg.group_size, cfg.eps_high) == (7, 256, 16, 0.28)
    cfg, run = split_settings(resolve("tapo", {}, []))
    assert (run["protocol"], cfg.reward, cfg.step_level, cfg.overlong_buffer) == ("tapo", "tapo", False, 1024)


def test_a_misspelt_key_names_the_nearest_one() -> None:
    with pytest.raises(UsageError, match="eps_high"):
        split_settings(resolve(None, {}, ["eps_hihg=0.3"]))


def test_backend_options_on_the_command_line_are_json() -> None:
    _, run = split_settings(resolve(None, {}, ['backend_options={"prefix_cache_mb": 0, "max_batch": 16}']))
    assert run["backend_options"] == {"prefix_cache_mb": 0, "max_batch": 16}
    with pytest.raises(UsageError, match="JSON object"):
        split_settings(resolve(None, {}, ["backend_options=prefix_cache_mb=0"]))
