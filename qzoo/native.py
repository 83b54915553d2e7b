"""qzoo's compiled parts (``csrc/``, one Python module), each computing what torch computes, bit for bit, with less
work:

- ``mlp_phase.cpp``: the update loop of a small MLP's training phase, the Python loop of
  :meth:`qzoo.fastpath.MLPPhase.run` written with the same ATen calls in the same order (tested), without Python's
  share of each of an update's ~30 small calls (~0.05-0.1 ms of a ~0.6 ms CartPole update).
- ``minatar.cpp``: centered RMSprop's step in one pass, and the MinAtar convolution's weight gradient, each used by
  :mod:`qzoo.fastpath_cnn` only after it has checked on this machine that they give torch's numbers.

It is built once per machine (for its CPU: ``-march=native``), torch version and source, with the C++ compiler and
``ninja`` (a dependency), into ``$XDG_CACHE_HOME/qzoo/native/`` (default ``~/.cache``): ``python -m qzoo.native``
(``scripts/setup.sh`` runs it). Training never compiles: it uses the library when it is built, and torch's own
calls otherwise (the same numbers). ``QZOO_NATIVE=0`` keeps torch's."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import sys
from pathlib import Path
from types import ModuleType

import torch

SOURCE_DIR = Path(__file__).resolve().parent / "csrc"  # every .cpp in it is compiled; .h files are hashed too
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-Wfatal-errors"]  # (the code writes each fma it means)
ENV = "QZOO_NATIVE"  # "0": never use the compiled kernels

_loaded: dict[str, ModuleType | None] = {}


_tags: dict[tuple[Path, str], str] = {}


def sources() -> list[Path]:
    return sorted(SOURCE_DIR.glob("*.cpp"))


def cpu_features() -> str:
    """The CPU's feature flags (Linux: /proc/cpuinfo), which ``-march=native`` compiles for: a library built on
    another CPU (a shared home directory) is not loaded."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def tag() -> str:
    """What the built library depends on: the sources, the flags, torch's version, the Python ABI, the machine type
    and its CPU's features (read and hashed once per source folder and torch version: every training phase asks)."""
    key = (SOURCE_DIR, torch.__version__)
    if key not in _tags:
        files = sorted(SOURCE_DIR.glob("*.cpp")) + sorted(SOURCE_DIR.glob("*.h"))
        data = b"\0".join([*(f.name.encode() + b"\0" + f.read_bytes() for f in files), " ".join(FLAGS).encode(),
                           torch.__version__.encode(), sys.implementation.cache_tag.encode(),
                           platform.machine().encode(), cpu_features().encode()])
        _tags[key] = hashlib.sha256(data).hexdigest()[:16]
    return _tags[key]


def module_name() -> str:
    return f"qzoo_native_{tag()}"


def build_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "qzoo" / "native" / module_name()


def library() -> Path:
    return build_dir() / f"{module_name()}.so"


def disabled() -> bool:
    return os.environ.get(ENV, "") == "0"


def load() -> ModuleType | None:
    """The compiled module if it is built (and not disabled by ``QZOO_NATIVE=0``), else None. Never compiles."""
    if disabled():
        return None
    name = module_name()
    if name not in _loaded:
        path, module = library(), None
        if path.is_file():
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        _loaded[name] = module
    return _loaded[name]


def build(verbose: bool = False) -> ModuleType:
    """Compile the module (if it is not built yet) and load it. Raises RuntimeError with the compiler's message
    when it cannot be built (no C++ compiler, no ninja)."""
    from torch.utils import cpp_extension

    directory = build_dir()
    directory.mkdir(parents=True, exist_ok=True)
    # ninja comes with qzoo's dependencies into this environment's bin/, which need not be on PATH
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join(p for p in (bin_dir, os.environ.get("PATH", "")) if p)
    module = cpp_extension.load(module_name(), [str(f) for f in sources()], build_directory=str(directory),
                                extra_cflags=FLAGS, verbose=verbose)
    _loaded[module_name()] = module
    return module


def describe() -> str:
    """One line on whether training uses the compiled kernels, and why not."""
    if disabled():
        return f"the compiled kernels are off ({ENV}=0): the update runs torch's calls from Python"
    if load() is not None:
        return "the compiled kernels are built (python -m qzoo.native built them)"
    return ("the compiled kernels are not built (python -m qzoo.native builds them): the update runs torch's calls "
            "from Python, the same numbers, slower")


def main(argv: list[str] | None = None) -> int:
    """``python -m qzoo.native [--verbose]``: build the compiled kernels (once), say where they are."""
    verbose = "--verbose" in (argv if argv is not None else sys.argv[1:])
    if load() is not None:
        print(f"qzoo native: already built: {library()}")
        return 0
    try:
        build(verbose)
    except (RuntimeError, OSError, ImportError) as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        why = next((line.split("error:", 1)[1].strip() for line in lines if "error:" in line),  # the compiler's
                   lines[0] if lines else type(e).__name__)
        print(f"qzoo native: not built ({why}); training runs torch's calls from Python (the same numbers, slower); "
              "python -m qzoo.native --verbose shows the compiler's output", file=sys.stderr)
        return 1
    print(f"qzoo native: built {library()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
