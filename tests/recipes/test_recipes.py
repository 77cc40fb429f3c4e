"""Every shipped recipe (recipes/<model>/<stage>.yaml, recipes/cpu/) says how to launch it and loads
into its command: its keys are the command's options or settings (a typo fails), its values fit
their types. Also: --config names the file, the line and the nearest key on a typo."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from thor_cli.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted(p for p in (ROOT / "recipes").rglob("*.yaml") if p.parent.name != "accelerate")
LAUNCH = re.compile(r"(?:\bthor|-m thor_cli)\s+(eval|gen|sft|rl)\b[^\n]*?--config\s+(\S+)")


def header(path: Path) -> str:
    """The leading comment, continuation lines joined."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return re.sub(r"\\\s*\n\s*", " ", "\n".join(lines))


def launch_command(path: Path) -> str:
    m = LAUNCH.search(header(path))
    assert m, f"{path}: the header has no launch line (thor CMD --config {path.relative_to(ROOT)} ...)"
    assert m.group(2) == str(path.relative_to(ROOT)), f"{path}: the launch line loads {m.group(2)}"
    return m.group(1)


def click_command(name: str) -> Any:
    import typer

    from thor_cli.cli.app import app

    group = typer.main.get_command(app)
    cmd = group.commands[name]  # type: ignore[attr-defined]
    return cmd.commands["run"] if name == "gen" else cmd


def load(name: str, path: Path, tmp_path: Path) -> dict[str, Any]:
    """Load ``path`` as thor ``name`` does, and type its values as the command does."""
    if name == "sft":
        from trl import SFTConfig

        from thor_cli.config import load_config_file
        from thor_cli.train.plumbing.settings import build_args, layered
        from thor_cli.train.sft.trainer import DATA_KEYS, sft_defaults, sft_setting_names

        values = load_config_file(path, sft_setting_names(), command="thor sft")
        build_args(SFTConfig, layered(sft_defaults(), values), own_keys=DATA_KEYS,
                   fixed={"output_dir": str(tmp_path / "run"), "report_to": "none"})
        return values
    # eval, gen, rl: the real option parsing (the --config callback checks the keys; click types the
    # values that are options)
    cmd = click_command(name)
    ctx = cmd.make_context(name, ["--config", str(path)])
    values = dict(ctx.default_map or {})
    if name == "rl":
        from thor_cli.train.rl.run import resolve, split_settings

        split_settings(resolve(None, {k: v for k, v in values.items() if k not in ctx.params}, []))
    return values


@pytest.mark.parametrize("path", RECIPES, ids=[str(p.relative_to(ROOT / "recipes")) for p in RECIPES])
def test_recipe_launches_and_loads(path: Path, tmp_path: Path) -> None:
    name = launch_command(path)
    assert name in path.stem, f"{path}: a {path.stem} recipe launched with thor {name}"
    values = load(name, path, tmp_path)
    assert values, f"{path} sets nothing"


def test_every_model_has_every_stage() -> None:
    stages = {"eval", "gen", "sft", "rl-thor", "rl-tapo"}
    dirs = {p.parent.name for p in RECIPES}
    assert {"qwen2.5-math-1.5b", "qwen2.5-math-7b", "qwen3-1.7b", "qwen3-8b", "cpu"} <= dirs
    for d in dirs:
        assert {p.stem for p in RECIPES if p.parent.name == d} == stages, d


def _typo(src: Path, dst: Path, key: str, bad: str) -> Path:
    text = src.read_text()
    assert re.search(rf"^{key}:", text, re.M), f"{src} has no {key}"
    dst.write_text(re.sub(rf"^{key}:", f"{bad}:", text, count=1, flags=re.M))
    return dst


@pytest.mark.parametrize(("recipe", "key", "bad"), [
    ("cpu/eval.yaml", "temperature", "tempreature"),
    ("cpu/gen.yaml", "step_tokens", "step_token"),
    ("cpu/sft.yaml", "learning_rate", "learning_rat"),
    ("cpu/rl-thor.yaml", "group_size", "grop_size"),
    ("qwen3-8b/rl-tapo.yaml", "overlong_buffer", "overlong_bufer"),
])
def test_a_typo_in_a_recipe_fails_naming_file_line_and_key(recipe: str, key: str, bad: str, tmp_path: Path) -> None:
    src = ROOT / "recipes" / recipe
    path = _typo(src, tmp_path / src.name, key, bad)
    line = 1 + next(i for i, x in enumerate(path.read_text().splitlines()) if x.startswith(f"{bad}:"))
    with pytest.raises(UsageError) as e:
        load(launch_command(src), path, tmp_path)
    assert f"{path}:{line}: unknown key '{bad}'" in str(e.value)
    assert f"did you mean {key}" in str(e.value)


def test_cli_refuses_a_recipe_with_a_typo(tmp_path: Path) -> None:
    path = _typo(ROOT / "recipes/cpu/eval.yaml", tmp_path / "eval.yaml", "max_tool_calls", "max_tool_call")
    res = subprocess.run([sys.executable, "-m", "thor_cli", "eval", "--config", str(path), "--model", "x", "-"],
                         input="", capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "unknown key 'max_tool_call' for thor eval" in res.stderr and "Traceback" not in res.stderr


def test_recipe_values_reach_the_command_and_flags_win(tmp_path: Path) -> None:
    cmd = click_command("eval")
    ctx = cmd.make_context("eval", ["--config", str(ROOT / "recipes/cpu/eval.yaml"), "--max-tokens", "7"])
    assert ctx.params["max_tokens"] == 7 and ctx.params["max_tool_calls"] == 4 and ctx.params["backend"] == "hf"
