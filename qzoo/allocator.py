"""The memory allocator of qzoo's training processes: jemalloc when the machine has it, glibc's malloc otherwise.

Every update on a Nature CNN allocates and frees the same megabytes (frames as bfloat16, activations, the fully
connected layer's bfloat16 weights and gradients). glibc's malloc serves them badly in two ways, both measured on
a DrQ(eps) Atari run (BENCHMARKS.md, Memory and Speed):

- it hands blocks of that size back to the kernel and maps them again, so each update pays ~3,000 page faults
  (~20% of a bfloat16 update on one core);
- in a ``qzoo bench`` worker its heap fragments without bound: 2.5 GB of heap after 6 minutes of a DrQ(eps) run
  whose live data is ~0.2 GB (free chunks never reused), 24 GB at 43k steps in an earlier run.

glibc's own knobs trade one for the other (``mallopt`` thresholds or PyTorch's huge-page allocations remove the
page faults but fragment the heap faster). jemalloc, which Intel recommends for PyTorch on CPUs, does neither:
0 page faults per update and a flat resident size. It cannot be switched to once the process runs, so the ``qzoo``
command starts itself again with jemalloc preloaded (``LD_PRELOAD``) when it finds one: the system's
(``libjemalloc.so.2``: ``apt install libjemalloc2``) or the copy that Ray's wheels ship. Worker processes inherit it.
``QZOO_ALLOCATOR=system`` keeps glibc's malloc.

jemalloc's default decay (``dirty_decay_ms:10000``; Ray's copy also ``muzzy_decay_ms:0``) still hands freed pages
back to the kernel while the same megabytes are allocated again at every update: a bfloat16 RL Zoo Atari update on
one core paid ~2,350 page faults and took 20.5 ms; with ``dirty_decay_ms:-1,muzzy_decay_ms:-1`` (keep freed pages
for reuse: Intel's PyTorch tuning guide sets both to ~forever) 0 faults and 16.3 ms, the resident size of a
DrQ(eps) update loop unchanged (BENCHMARKS.md, Speed). qzoo sets that ``MALLOC_CONF`` with the preload unless the
user set one (an empty ``MALLOC_CONF=`` keeps jemalloc's defaults).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

ENV = "QZOO_ALLOCATOR"  # "system": glibc's malloc; anything else: jemalloc when found
_PRELOADED = "QZOO_PRELOADED"  # set by qzoo when it added jemalloc to LD_PRELOAD (the path it added)
_CONF_SET = "QZOO_MALLOC_CONF"  # set by qzoo when it also set MALLOC_CONF (the value it set)
MALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"  # keep freed pages for the next update (see above)
LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib",
                "/opt/homebrew/lib")
NAMES = ("libjemalloc.so.2", "libjemalloc.so")


def find_jemalloc() -> str | None:
    """A jemalloc shared library on this machine: the system's, or the one in Ray's wheel (ray/core)."""
    for directory in (*LIBRARY_DIRS, str(Path(sys.prefix) / "lib")):
        for name in NAMES:
            path = Path(directory) / name
            if path.is_file():
                return str(path)
    try:
        spec = importlib.util.find_spec("ray")
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "core" / "libjemalloc.so"
        if path.is_file():
            return str(path)
    return None


def in_use() -> str | None:
    """The jemalloc library mapped into this process, if any (Linux)."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                if "jemalloc" in line:
                    return line.split()[-1]
    except OSError:
        pass
    return None


def describe() -> str:
    """This process's allocator, in words (a run's first lines)."""
    path = in_use()
    if path is not None:
        return f"jemalloc ({path})"
    why = ("QZOO_ALLOCATOR=system" if os.environ.get(ENV) == "system" else
           "no jemalloc found: apt install libjemalloc2, or pip install 'qzoo[ray]'")
    return f"the system's malloc ({why}; a CNN run's memory may fragment and grow, qzoo/allocator.py)"


def environ(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with jemalloc preloaded, when qzoo would use it: Linux, not
    ``QZOO_ALLOCATOR=system``, and a library found. Unchanged otherwise."""
    env = dict(os.environ if base is None else base)
    if not sys.platform.startswith("linux") or env.get(ENV) == "system" or "jemalloc" in env.get("LD_PRELOAD", ""):
        return env
    path = find_jemalloc()
    if path is not None:
        env["LD_PRELOAD"] = ":".join(p for p in (path, env.get("LD_PRELOAD", "")) if p)
        env[_PRELOADED] = path
        if "MALLOC_CONF" not in env:
            env["MALLOC_CONF"] = env[_CONF_SET] = MALLOC_CONF
    return env


def without_qzoo_preload(env: dict[str, str]) -> dict[str, str]:
    """``env`` without the jemalloc that qzoo preloaded (a peer library is measured with its own allocator)."""
    env = dict(env)
    if env.pop(_CONF_SET, None) is not None:
        env.pop("MALLOC_CONF", None)
    added = env.pop(_PRELOADED, None)
    if added is not None:
        rest = [p for p in env.get("LD_PRELOAD", "").split(":") if p and p != added]
        if rest:
            env["LD_PRELOAD"] = ":".join(rest)
        else:
            env.pop("LD_PRELOAD", None)
    return env


def restart_with_jemalloc(argv: list[str]) -> None:
    """Replace this process by ``python -m qzoo ARGV`` with jemalloc preloaded, if qzoo would use it and it is not
    loaded yet. Returns (doing nothing) otherwise, and after one attempt (``QZOO_PRELOADED`` set) whatever happened."""
    restart_python_with_jemalloc(["-m", "qzoo", *argv])


def restart_python_with_jemalloc(args: list[str]) -> None:
    """:func:`restart_with_jemalloc` for any command line of this python: ``python ARGS`` (a benchmark script passes
    ``sys.argv``, so it runs as the ``qzoo`` command does)."""
    if in_use() or _PRELOADED in os.environ:
        return
    env = environ()
    if _PRELOADED in env:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *args], env)
