"""qzoo/allocator.py: which allocator the qzoo command's training processes get, and that peers keep their own."""

import os
import subprocess
import sys

from qzoo import allocator
from qzoo.bench.peer import peer_environ


def fake_library(tmp_path, monkeypatch):
    lib = tmp_path / "libjemalloc.so.2"
    lib.write_bytes(b"")
    monkeypatch.setattr(allocator, "LIBRARY_DIRS", (str(tmp_path),))
    monkeypatch.setattr(sys, "platform", "linux")
    return str(lib)


def test_jemalloc_is_preloaded_when_found_before_what_the_user_preloads(tmp_path, monkeypatch):
    lib = fake_library(tmp_path, monkeypatch)
    env = allocator.environ({"LD_PRELOAD": "/x/libmine.so", "HOME": "/h"})
    assert env["LD_PRELOAD"] == f"{lib}:/x/libmine.so" and env["QZOO_PRELOADED"] == lib and env["HOME"] == "/h"
    assert env["MALLOC_CONF"] == "dirty_decay_ms:-1,muzzy_decay_ms:-1"  # freed pages kept for the next update
    assert allocator.environ({})["LD_PRELOAD"] == lib
    # the user's MALLOC_CONF, even an empty one (jemalloc's defaults), is left as it is, and stays for a peer
    for conf in ("", "narenas:1"):
        mine = allocator.environ({"MALLOC_CONF": conf})
        assert mine["MALLOC_CONF"] == conf and allocator.without_qzoo_preload(mine) == {"MALLOC_CONF": conf}
    # a peer gets the user's environment back, qzoo's jemalloc taken out
    assert allocator.without_qzoo_preload(env) == {"LD_PRELOAD": "/x/libmine.so", "HOME": "/h"}
    assert allocator.without_qzoo_preload(allocator.environ({})) == {}


def test_no_preload_when_told_not_to_when_one_is_there_or_none_is_found(tmp_path, monkeypatch):
    fake_library(tmp_path, monkeypatch)
    for env in ({"QZOO_ALLOCATOR": "system"}, {"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}):
        assert allocator.environ(env) == env
    monkeypatch.setattr(allocator, "LIBRARY_DIRS", (str(tmp_path / "empty"),))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "empty"))
    monkeypatch.setattr(allocator.importlib.util, "find_spec", lambda name: None)
    assert allocator.find_jemalloc() is None and allocator.environ({"A": "1"}) == {"A": "1"}


def test_a_restart_is_tried_once(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator.os, "execve", lambda *a: calls.append(a))
    monkeypatch.setattr(allocator, "in_use", lambda: None)
    monkeypatch.setattr(allocator, "find_jemalloc", lambda: "/lib/libjemalloc.so.2")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("QZOO_ALLOCATOR", raising=False)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv("QZOO_PRELOADED", raising=False)
    allocator.restart_with_jemalloc(["train", "CartPole-v1"])
    (executable, argv, env), = calls
    assert argv[1:] == ["-m", "qzoo", "train", "CartPole-v1"] and env["LD_PRELOAD"] == "/lib/libjemalloc.so.2"
    monkeypatch.setenv("QZOO_PRELOADED", "/lib/libjemalloc.so.2")  # the restarted process (preload failed or not)
    allocator.restart_with_jemalloc(["train", "CartPole-v1"])
    assert len(calls) == 1


def test_a_process_started_with_the_environment_runs_on_jemalloc_and_a_peer_does_not():
    found = allocator.find_jemalloc()
    probe = [sys.executable, "-c", "from qzoo import allocator; print(allocator.in_use())"]
    out = subprocess.run(probe, env=allocator.environ(dict(os.environ)), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (found if found else "None")  # mapped into the process when there is one
    if found:  # and jemalloc took the MALLOC_CONF qzoo set: asked through its own mallctl
        ask = ("import ctypes; lib = ctypes.CDLL(None); v = ctypes.c_ssize_t(); n = ctypes.c_size_t(8); print(*["
               "(lib.mallctl(k, ctypes.byref(v), ctypes.byref(n), None, 0), v.value)[1] for k in "
               "(b'opt.dirty_decay_ms', b'opt.muzzy_decay_ms')])")
        env = allocator.environ({k: v for k, v in os.environ.items() if k != "MALLOC_CONF"})
        decay = subprocess.run([sys.executable, "-c", ask], env=env, capture_output=True, text=True, check=True)
        assert decay.stdout.split() == ["-1", "-1"] and decay.stderr == ""
    os.environ.update(allocator.environ())  # as inside the restarted qzoo command
    try:
        peer = subprocess.run(probe, env=peer_environ(), capture_output=True, text=True, check=True)
    finally:
        os.environ.pop("QZOO_PRELOADED", None)
        if found:
            os.environ.pop("LD_PRELOAD", None)
    assert peer.stdout.strip() == "None"
