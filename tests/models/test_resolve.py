"""resolve_model and the THOR_HOME cache layout (unit tests; no network, no real model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from thor_cli.errors import ThorError
from thor_cli.models import MODELS, cached_path, models_dir, resolve_model, thor_home
from thor_cli.models import resolve as resolve_mod


def fake_checkpoint(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_thor_home_from_env_and_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert thor_home() == tmp_path / "thor-home"  # set by tests/conftest.py
    assert models_dir() == tmp_path / "thor-home" / "models"
    monkeypatch.delenv("THOR_HOME")
    assert thor_home() == Path.home() / ".cache" / "thor"


def test_cached_name_resolves_to_its_folder() -> None:
    folder = fake_checkpoint(models_dir() / "smollm2-135m")
    assert resolve_model("smollm2-135m") == str(folder)
    assert cached_path("smollm2-135m") == folder


def test_half_written_or_hidden_folders_are_not_cached() -> None:
    (models_dir() / "broken").mkdir(parents=True)  # no config.json
    fake_checkpoint(models_dir() / ".pull-x")
    assert cached_path("broken") is None and cached_path(".pull-x") is None
    with pytest.raises(ThorError):
        resolve_model(".pull-x")


def test_local_folder_is_returned_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_checkpoint(tmp_path / "ckpt")
    assert resolve_model(str(tmp_path / "ckpt")) == str(tmp_path / "ckpt")
    monkeypatch.chdir(tmp_path)
    assert resolve_model("ckpt") == "ckpt"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ThorError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))


def test_pullable_name_not_cached_says_how_to_pull() -> None:
    name = next(iter(MODELS))
    with pytest.raises(ThorError, match=f"thor models pull {name}"):
        resolve_model(name)


def test_hub_id_offline_is_a_clear_error() -> None:
    with pytest.raises(ThorError, match="offline"):  # HF_HUB_OFFLINE=1 in tests/conftest.py
        resolve_model("Qwen/Qwen2.5-Math-1.5B")


def test_hub_id_online_or_in_hf_cache_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resolve_mod, "hub_available", lambda: True)
    assert resolve_model("Qwen/Qwen2.5-Math-1.5B") == "Qwen/Qwen2.5-Math-1.5B"
    monkeypatch.setattr(resolve_mod, "hub_available", lambda: False)
    monkeypatch.setattr(resolve_mod, "_in_hf_cache", lambda spec: spec == "org/cached")
    assert resolve_model("org/cached") == "org/cached"


@pytest.mark.parametrize("spec", ["", "  ", "./missing", "/no/such/folder", "a/b/c", "not-a-model"])
def test_neither_path_nor_name_nor_id(spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resolve_mod, "hub_available", lambda: True)  # even online these are errors
    with pytest.raises(ThorError):
        resolve_model(spec)
