"""Parts of the zygote on their own, each in a child process that runs zygote.py's source:
NetPool gives a network namespace to the next session only when no socket is left in it
(through the pool, test_isolation checks that sessions never meet); numpy's global generator is
re-seeded in place, as numpy's own seed(None) would leave it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from thor_cli.sandbox.jail import zygote_source

# NetPool moves the process that runs it between network namespaces
NETPOOL = r"""
import json, os, socket, sys, time
ns = {"__name__": "zygote"}
exec(sys.stdin.read(), ns)
ino = lambda: os.stat("/proc/self/ns/net").st_ino
home = ino()
pool = ns["NetPool"]()
a = pool.enter(); in_a = ino()
s = socket.socket(socket.AF_UNIX); s.bind(b"\0thor-netpool-test")  # a socket left in namespace a
pool.leave(); back = ino(); pool.release(a)
b = pool.enter(); in_b = ino()  # a still holds a socket: a new namespace instead
pool.leave(); pool.release(b)
s.close()
for _ in range(100):  # a closed socket is freed after an RCU grace period
    c = pool.enter(); in_c = ino(); pool.leave()
    if in_c == in_b:
        break
    pool.release(c); time.sleep(0.01)
print(json.dumps({"fresh": in_a != home, "home_again": back == home, "dirty_not_reused": in_b != in_a,
                  "clean_reused": in_c == in_b, "free": len(pool.free)}))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="making network namespaces needs root")
def test_a_namespace_with_a_socket_left_is_not_given_again() -> None:
    got = _run(NETPOOL)
    assert got == {"fresh": True, "home_again": True, "dirty_not_reused": True, "clean_reused": True, "free": 0}, got


NUMPY = r"""
import json, sys
ns = {"__name__": "zygote"}
exec(sys.stdin.read(), ns)
import numpy as np, numpy.random
ns["_NP_STATE"][:] = ns["_find_numpy_state"]()
found = bool(ns["_NP_STATE"])
states = []
for _ in range(2):
    ns["_reseed"]()  # what each session does first
    name, key, pos, has_gauss, _ = np.random.get_state()
    draws = np.random.random(3)
    same = np.random.RandomState()
    same.set_state((name, key, pos, has_gauss, 0.0))
    states.append({"key0": int(key[0]), "pos": int(pos), "gauss": int(has_gauss),
                   "as_numpy_draws": bool((same.random_sample(3) == draws).all()), "key": key[1:].tolist()})
print(json.dumps({"found": found, "differ": states[0]["key"] != states[1]["key"],
                  "states": [{k: v for k, v in st.items() if k != "key"} for st in states]}))
"""


def test_numpy_generator_reseeded_in_place_as_numpy_would() -> None:
    pytest.importorskip("numpy")
    got = _run(NUMPY)
    want = {"key0": 0x80000000, "pos": 624, "gauss": 0, "as_numpy_draws": True}
    assert got == {"found": True, "differ": True, "states": [want, want]}, got


def _run(script: str) -> dict:
    p = subprocess.run([sys.executable, "-c", script], input=zygote_source(), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)
