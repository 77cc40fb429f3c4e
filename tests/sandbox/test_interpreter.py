"""The jail's interpreter: the one the user chooses (a venv's python, its own site-packages), refusals
that say what to do, and the immortal warm heap of CPython 3.12+ (zygote.immortalize)."""

from __future__ import annotations

import asyncio
import glob
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from thor_cli.errors import SandboxError
from thor_cli.sandbox import SandboxConfig, SandboxPool, jail

ZYGOTE = Path(jail.__file__).with_name("zygote.py")


def python_with_immortal_objects() -> str | None:
    """A CPython 3.12 or 3.13 on this machine (it need not be reachable from the jail), or None."""
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    for c in [jail.SANDBOX_VENV, shutil.which("python3.12"), shutil.which("python3.13"),
              *sorted(glob.glob(f"{pyenv}/versions/3.1[23].*/bin/python3.1[23]"))]:
        if c and os.access(c, os.X_OK):
            ok = subprocess.run([c, "-c", "import sys; sys.exit(not (3, 12) <= sys.version_info[:2] <= (3, 13))"],
                                capture_output=True)
            if ok.returncode == 0:
                return c
    return None


# Runs in the interpreter under test: a heap of 100,000 small lists, then (or not) immortalize(),
# then a fork that only reads every list (a for loop increfs each): the page faults of that child
# are the pages it copied.
FORK_AND_READ = r"""
import gc, json, os, resource, sys, weakref
ns = {"__name__": "zygote_source"}
exec(compile(open(sys.argv[1]).read(), "zygote.py", "exec"), ns)
heap = [[i] for i in range(100_000)]
gc.collect()
made = ns["immortalize"]() if sys.argv[2] == "1" else 0
gc.freeze(); gc.disable()
r, w = os.pipe()
if os.fork() == 0:
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    n = 0
    for x in heap:
        n += len(x)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    class Fresh: pass
    fresh, freed = Fresh(), []
    weakref.finalize(fresh, freed.append, 1)
    del fresh  # made after immortalize: freed as usual
    os.write(w, json.dumps({"faults": faults, "freed": freed == [1], "n": n,
                            "refcount": sys.getrefcount(heap[7])}).encode())
    os._exit(0)
os.close(w)
child = json.loads(os.read(r, 4096))
os.wait()
print(json.dumps({"made": made, **child}))
"""


def run_zygote_script(python: str, script: str, flag: bool) -> dict:
    """Run ``script`` (one of the fork scripts here) in ``python`` with the zygote's source; its JSON."""
    p = subprocess.run([python, "-S", "-c", script, str(ZYGOTE), "1" if flag else "0"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def fork_and_read(python: str, immortal: bool) -> dict:
    return run_zygote_script(python, FORK_AND_READ, immortal)


def test_an_immortal_heap_is_not_copied_by_a_fork_that_uses_it() -> None:
    py = python_with_immortal_objects()
    if py is None:
        pytest.skip("no CPython 3.12/3.13 on this machine")
    plain, imm = fork_and_read(py, False), fork_and_read(py, True)
    assert plain["made"] == 0 and imm["made"] >= 100_000, (plain, imm)
    # 100,000 lists of 56 bytes span ~1,400 pages: reading them copied each page once, and none once immortal
    assert plain["faults"] > 1000 and imm["faults"] * 10 < plain["faults"], (plain, imm)
    assert plain["n"] == imm["n"] == 100_000
    assert imm["refcount"] == 0xFFFFFFFF and plain["refcount"] < 10
    assert imm["freed"] and plain["freed"]  # what a session makes itself is still freed


def test_before_3_12_immortalize_leaves_the_heap_alone() -> None:
    old = "/usr/bin/python3"
    if not os.path.exists(old) or subprocess.run([old, "-c", "import sys; sys.exit(sys.version_info >= (3, 12))"]).returncode:
        pytest.skip("no interpreter older than 3.12 at /usr/bin/python3")
    res = fork_and_read(old, True)
    assert res["made"] == 0 and res["refcount"] < 10 and res["faults"] > 1000


def reachable_dir() -> Path:
    """A fresh folder the jail can mount (pytest's tmp_path is under a 0700 folder)."""
    d = Path(tempfile.mkdtemp(prefix="thor-py-", dir="/tmp"))
    d.chmod(0o755)
    return d


def make_venv(where: Path) -> Path:
    """A venv of /usr/bin/python3 (no pip: fast) with one module of its own in its site-packages."""
    base = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    subprocess.run([base, "-m", "venv", "--without-pip", str(where)], check=True, capture_output=True)
    site = next(where.glob("lib/python3*/site-packages"))
    (site / "thor_probe_mod.py").write_text("VALUE = 42\n")
    for p in [where, *where.rglob("*")]:
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)
    return where / "bin" / "python"


def run_cells(cfg: SandboxConfig, *cells: str) -> list:
    async def go() -> list:
        async with SandboxPool(cfg) as pool, await pool.session() as s:
            return [await s.run(c) for c in cells]

    return asyncio.run(go())


def test_a_chosen_venv_runs_the_jail_with_its_own_site_packages() -> None:
    d = reachable_dir()
    try:
        py = make_venv(d / "venv")
        info = jail.interpreter(str(py))
        assert info.sites and all(s.startswith(str(d)) for s in info.sites), info
        cfg = SandboxConfig(workers=1, preload=(), python=str(py))
        mine, theirs = run_cells(cfg, "import thor_probe_mod\nprint(thor_probe_mod.VALUE)", "import orjson")
        assert mine.status == "ok" and mine.stdout == "42\n", mine
        # this venv's packages are not mounted when the chosen interpreter has its own
        assert theirs.status == "error" and "ModuleNotFoundError" in theirs.error, theirs
    finally:
        shutil.rmtree(d)


def test_system_chooses_debians_python_with_this_venvs_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(jail.SANDBOX_PYTHON_ENV, "system")
    cfg = SandboxConfig()
    assert jail.chosen_python(cfg) is None
    assert jail.site_dirs(cfg) == list(dict.fromkeys([sysconfig.get_paths()[k] for k in ("purelib", "platlib")]))
    monkeypatch.setenv(jail.SANDBOX_PYTHON_ENV, "/some/python")
    assert jail.chosen_python(cfg) == "/some/python"
    assert jail.chosen_python(SandboxConfig(python="system")) is None


def test_an_interpreter_that_does_not_run_is_refused_with_what_to_do() -> None:
    with pytest.raises(SandboxError) as e:
        jail.interpreter("/nonexistent/bin/python")
    assert "/nonexistent/bin/python" in str(e.value) and jail.SANDBOX_PYTHON_ENV in e.value.hint


@pytest.mark.skipif(os.geteuid() != 0, reason="as root the jail mounts as an unprivileged uid")
def test_a_venv_the_jail_cannot_reach_is_refused_with_what_to_do(tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    py = make_venv(hidden / "venv")
    hidden.chmod(0o700)
    with pytest.raises(SandboxError) as e:
        run_cells(SandboxConfig(workers=1, preload=(), python=str(py)), "print(1)")
    msg = str(e.value)
    assert "cannot mount" in msg and "not searchable" in msg and "chmod o+x" in e.value.hint, (msg, e.value.hint)


def test_the_sandboxs_own_interpreter_has_an_immortal_heap_and_sessions_still_work() -> None:
    """Where shell/setup-sandbox-python.sh made /opt/thor/sandbox (CI does: root, pyenv's 3.12)."""
    if jail.chosen_python(SandboxConfig()) is None:
        pytest.skip("the sandbox runs /usr/bin/python3 here (no /opt/thor/sandbox, or THOR_SANDBOX_PYTHON=system)")
    probe = ("import sys, sympy\nx = sympy.symbols('x')\n"
             "print(sys.version_info >= (3, 12), sys.getrefcount(sympy.factor) >= 2**31, sympy.factor(x**2 - 1))")
    imm, = run_cells(SandboxConfig(workers=1), probe)
    plain, = run_cells(SandboxConfig(workers=1, immortal=False), probe)
    assert imm.status == "ok" and imm.stdout == "True True (x - 1)*(x + 1)\n", imm
    assert plain.status == "ok" and plain.stdout == "True False (x - 1)*(x + 1)\n", plain


# A warm heap with 100,000 freed lists scattered over its pages, then (or not) fill_free_blocks(),
# then a fork that makes 50,000 new lists: the page faults of that child are the pages it touched.
FORK_AND_ALLOCATE = r"""
import gc, json, os, resource, sys
ns = {"__name__": "zygote_source"}
exec(compile(open(sys.argv[1]).read(), "zygote.py", "exec"), ns)
heap = [[i] for i in range(200_000)]
del heap[::2]
gc.collect()
filled = ns["fill_free_blocks"]() if sys.argv[2] == "1" else 0
gc.freeze(); gc.disable()
r, w = os.pipe()
if os.fork() == 0:
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    new = [[i] for i in range(50_000)]
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    os.write(w, json.dumps({"faults": faults, "sum": sum(x[0] for x in new)}).encode())
    os._exit(0)
os.close(w)
child = json.loads(os.read(r, 4096))
os.wait()
print(json.dumps({"filled": filled, **child}))
"""


def test_filled_free_blocks_pack_a_forks_new_objects_into_fresh_pages() -> None:
    plain, filled = (run_zygote_script(sys.executable, FORK_AND_ALLOCATE, fill) for fill in (False, True))
    assert plain["filled"] == 0 and filled["filled"] >= 100_000, (plain, filled)
    assert plain["sum"] == filled["sum"] == sum(range(50_000))
    # without: each new list lands in a freed slot between live ones, and its page is copied
    assert filled["faults"] < 0.75 * plain["faults"], (plain, filled)
