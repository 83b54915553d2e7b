"""Files that survive a crash: written to a temporary name, fsynced, renamed (and the directory fsynced); their
sha256 (for the manifests that vouch for a checkpoint); nested arrays flattened for ``np.savez`` (no pickle).
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np


class CheckpointError(RuntimeError):
    """A checkpoint or model file could not be written (disk full, permissions). ``str(err)`` is one line."""

def atomic_write(path: Path, write: Callable) -> None:
    """``write(file)`` into a temporary file next to ``path``, flush, fsync, rename over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # some filesystems cannot fsync a directory
        pass


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))

def describe_os_error(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "the disk is full"
    return e.strerror or str(e)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()

def flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dicts of arrays and scalars -> ``{"a/b": array}`` for np.savez (no pickled objects)."""
    out: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = np.asarray(value)
    return out


def unflatten(arrays) -> dict:
    """Inverse of :func:`flatten`; 0-d arrays come back as Python scalars."""
    tree: dict = {}
    for key in arrays:
        *parents, leaf = key.split("/")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        value = arrays[key]
        node[leaf] = value.item() if value.ndim == 0 else value
    return tree
