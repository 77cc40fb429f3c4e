"""The CLI boundary through the real `thor` entry point: help, version, exit codes, errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from thor_cli.cli.app import COMMANDS

THOR = str(Path(sys.executable).parent / "thor")


def thor(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([THOR, *args], input=stdin, capture_output=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_help_lists_exactly_the_registered_commands() -> None:
    res = thor("--help")
    assert res.returncode == 0
    out = res.stdout.decode()
    for _, _, name, _ in COMMANDS:
        assert name in out
    for unbuilt in ("gen", "sft", " rl "):
        if not any(name == unbuilt.strip() for _, _, name, _ in COMMANDS):
            assert f"│ {unbuilt.strip()} " not in out, f"{unbuilt} is offered but not built"


def test_version() -> None:
    res = thor("--version")
    assert res.returncode == 0 and res.stdout.decode().startswith("thor ")


def _all_command_paths() -> list[list[str]]:
    import typer.main

    from thor_cli.cli.app import app

    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(cmd: object, prefix: list[str]) -> None:
        sub = getattr(cmd, "commands", None)
        if prefix:
            paths.append(prefix)
        if sub:
            for name, child in sub.items():
                walk(child, [*prefix, name])

    walk(root, [])
    return paths


@pytest.mark.parametrize("path", _all_command_paths(), ids=lambda p: " ".join(p))
def test_every_command_help_runs_and_ends_with_examples(path: list[str]) -> None:
    res = thor(*path, "--help")
    assert res.returncode == 0, res.stderr.decode()
    text = res.stdout.decode()
    assert "Usage:" in text
    if not any(name == path[0] and kind == "group" for _, _, name, kind in COMMANDS) or len(path) > 1:
        assert "Examples" in text and "|" in text, f"thor {' '.join(path)} --help has no pipe example"


def test_unknown_command_and_bad_option_are_usage_errors() -> None:
    assert thor("no-such-command").returncode == 2
    assert thor("--no-such-flag").returncode == 2


def test_closed_pipe_is_quiet_and_exit_zero() -> None:
    res = subprocess.run(f"set -o pipefail; {THOR} data get gsm8k | head -n 1", shell=True,
                         capture_output=True, executable="/bin/bash", timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout.count(b"\n") == 1
    assert res.stderr == b"", res.stderr.decode()


def test_data_error_is_one_line_exit_1_and_debug_shows_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"question": "q", "answer": "1"}\n{"question": 5, "answer": "2"}\n')
    res = thor("data", "convert", str(bad))
    err = res.stderr.decode()
    assert res.returncode == 1
    assert err.startswith("Error: ") and f"{bad}:2:" in err and "Traceback" not in err
    res = thor("data", "convert", str(bad), env={"THOR_DEBUG": "1"})
    assert res.returncode != 0 and "Traceback" in res.stderr.decode()


def test_empty_input_writes_an_empty_file_and_warns(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    res = thor("data", "convert", "-", "-o", str(out), stdin=b"")
    assert res.returncode == 0, res.stderr.decode()
    assert out.exists() and out.read_bytes() == b""
    assert b"no input records" in res.stderr


def test_ctrl_c_exits_130_and_keeps_partial_output(tmp_path: Path) -> None:
    import signal
    import time

    out = tmp_path / "o.jsonl"
    # stdin stays open, so `thor data convert` blocks waiting for more records after the first
    # a shell starts commands with SIGINT at its default; a test process may have inherited it
    # ignored (then so would the child, and Ctrl-C could not reach it): start the child as a shell would
    proc = subprocess.Popen([THOR, "data", "convert", "-", "-o", str(out)], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdin is not None
    proc.stdin.write(b'{"question": "q", "answer": "1"}\n')
    proc.stdin.flush()
    part = tmp_path / "o.jsonl.part"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (part.exists() and part.stat().st_size > 0):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err
    assert not out.exists() and part.read_bytes().count(b"\n") == 1


def test_config_file_sets_defaults_and_flags_win(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("source: fromconfig\nlimit: 1\n")
    rows = b'{"question": "a", "answer": "1"}\n{"question": "b", "answer": "2"}\n'
    res = thor("data", "convert", "--config", str(cfg), stdin=rows)
    assert res.returncode == 0, res.stderr.decode()
    lines = res.stdout.splitlines()
    assert len(lines) == 1 and b'"source":"fromconfig"' in lines[0]
    res = thor("data", "convert", "--config", str(cfg), "--source", "flag", "--limit", "2", stdin=rows)
    assert res.stdout.count(b'"source":"flag"') == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    res = thor("data", "convert", "--config", str(bad), stdin=rows)
    assert res.returncode == 2 and b"--config" in res.stderr


def test_an_internal_broken_pipe_is_an_error_with_a_message(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """typer alone would exit 1 silently on any EPIPE; a dead helper process must be reported."""
    import thor_cli.cli.data as data_cli
    from thor_cli.cli.app import main

    def broken(*_: object, **__: object) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(data_cli, "print_table", broken)
    with pytest.raises(SystemExit) as ended:
        main(["data", "list"])
    assert ended.value.code == 1
    assert "Error: a pipe to a helper process broke" in capsys.readouterr().err
