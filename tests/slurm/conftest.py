"""A one-node Slurm cluster for the tests of recipes/slurm (started by shell/setup-slurm.sh).

The fixture installs (as root, with apt-get) and starts munge, slurmctld and slurmd once per
session, and stops them at the end if it started them. Where that cannot be done (not root, no
apt-get, a daemon that does not start) the tests are skipped with the script's reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "shell" / "setup-slurm.sh"


def _sinfo_ok() -> bool:
    if shutil.which("sinfo") is None:
        return False
    res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    return res.returncode == 0 and any(s.startswith(("idle", "mixed", "alloc")) for s in res.stdout.split())


@pytest.fixture(scope="session")
def slurm() -> Iterator[None]:
    """A running one-node Slurm (or a skip that says why not)."""
    if sys.platform != "linux":
        pytest.skip("the Slurm tests need Linux")
    already = _sinfo_ok()
    if not already:
        res = subprocess.run([str(SETUP)], capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            why = (res.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(f"no Slurm here: shell/setup-slurm.sh failed ({why})")
    yield
    if not already:
        subprocess.run([str(SETUP), "stop"], capture_output=True, timeout=60)


@pytest.fixture
def job_env(tmp_path: Path) -> dict[str, str]:
    """The environment the jobs inherit (sbatch exports it): this interpreter's venv, this tree's
    thor, the test's THOR_HOME."""
    return {**os.environ, "VENV": str(Path(sys.executable).parent.parent), "PYTHONPATH": str(ROOT / "src"),
            "THOR_DIR": str(ROOT)}
