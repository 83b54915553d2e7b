"""Periodic checkpoints: each three files (training state, replay buffer, manifest), written with
:class:`Checkpointer` (the manifest last), checked with :func:`verify`, pruned to ``keep_checkpoints``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from qzoo.checkpoint.durable import (
    CheckpointError,
    atomic_write,
    atomic_write_bytes,
    describe_os_error,
    flatten,
    sha256_file,
)
from qzoo.checkpoint.models import FORMAT_VERSION
from qzoo.checkpoint.rundir import checkpoint_names, checkpoint_steps
from qzoo.config import Config

# save_replay auto: saved when the buffer's filled part is at most this big and (keep_checkpoints + 1) copies
# of it take at most half of the free disk space.
AUTO_REPLAY_MAX_BYTES = 4 * 2**30


class Checkpointer:
    """Writes the periodic checkpoints of one run (see the module docstring for what makes one complete)."""

    def __init__(self, run_dir: Path, config: Config, obs_shape, n_actions: int, out=None):
        self.directory = Path(run_dir) / "checkpoints"
        self.config, self.obs_shape, self.n_actions, self.out = config, tuple(obs_shape), n_actions, out
        self.replay_saved: bool | None = None  # the last decision, to say so when it changes
        self.latest: Path | None = None

    def save(self, step: int, state: dict, replay) -> Path:
        """Write ``state`` (the loop's: agent, RNGs, envs, ...) and ``replay``'s as checkpoint ``step``. A step
        already written (a stop right after a periodic checkpoint) is not written again: rewriting its files one by
        one would leave a moment in which they do not match their manifest."""
        if self.latest is not None and self.latest.name == checkpoint_names(step)[0]:
            return self.latest
        self.directory.mkdir(exist_ok=True)
        arrays = flatten(replay.state_dict())
        with_replay = self._keep_replay(sum(a.nbytes for a in arrays.values()))
        payload = {"format": "qzoo-checkpoint", "version": FORMAT_VERSION, "env_id": self.config.env_id,
                   "algo": self.config.algo, "obs_shape": self.obs_shape, "n_actions": self.n_actions, "step": step,
                   "config": self.config.to_dict(), "replay": with_replay, **state}
        pt, npz, manifest = (self.directory / name for name in checkpoint_names(step))
        written = []
        try:
            atomic_write(pt, lambda f: torch.save(payload, f))
            written.append(pt)
            if with_replay:
                atomic_write(npz, lambda f: np.savez(f, **arrays))
                written.append(npz)
            files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in written}
            atomic_write_bytes(manifest, json.dumps({"format": "qzoo-checkpoint", "version": FORMAT_VERSION,
                                                     "step": step, "files": files}, indent=1).encode())
        except OSError as e:
            for p in written:
                p.unlink(missing_ok=True)
            previous = f"the previous checkpoint {self.latest.name} is intact" if self.latest else \
                "no earlier checkpoint was written"
            raise CheckpointError(f"could not write checkpoint step_{step} in {self.directory}: "
                                  f"{describe_os_error(e)}; nothing of it was kept and {previous}") from None
        self.latest = pt
        self._prune(step)
        return pt

    def _keep_replay(self, nbytes: int) -> bool:
        mode = self.config.save_replay
        if mode == "auto":
            free = shutil.disk_usage(self.directory).free
            keep = nbytes <= AUTO_REPLAY_MAX_BYTES and (self.config.keep_checkpoints + 1) * nbytes <= free / 2
        else:
            keep = mode == "true"
        if keep != self.replay_saved and self.out is not None and not (keep and self.replay_saved is None):
            print(f"qzoo: checkpoints {'include' if keep else 'leave out'} the replay buffer ({nbytes / 2**30:.2f} "
                  f"GiB, save_replay {mode}{'' if keep else '; a resume refills it before learning'})",
                  file=self.out, flush=True)
        self.replay_saved = keep
        return keep

    def _prune(self, step: int) -> None:
        """Keep the newest ``keep_checkpoints`` complete checkpoints up to ``step``; delete older files (the
        manifest first, so a checkpoint stops counting before its files go) and leftover temporary files."""
        complete = sorted(s for s in checkpoint_steps(self.directory)
                          if (self.directory / checkpoint_names(s)[2]).is_file())
        keep = set(complete[-self.config.keep_checkpoints:]) | {s for s in complete if s > step}
        for s in checkpoint_steps(self.directory):
            if s not in keep and s <= step:
                for name in reversed(checkpoint_names(s)):
                    (self.directory / name).unlink(missing_ok=True)
        for tmp in self.directory.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)

def verify(directory: Path, step: int) -> str | None:
    """None when checkpoint ``step`` is complete and intact, else why not (a phrase)."""
    manifest_path = Path(directory) / checkpoint_names(step)[2]
    if not manifest_path.is_file():
        return "no manifest (its write was interrupted, or an older qzoo wrote it)"
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        assert checkpoint_names(step)[0] in files
    except Exception:
        return f"its manifest {manifest_path.name} is unreadable"
    for name, meta in files.items():
        path = Path(directory) / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != meta["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, the manifest says {meta['bytes']} (truncated?)"
        if sha256_file(path) != meta["sha256"]:
            return f"{name} does not match its sha256 checksum (corrupted)"
    return None

def discard_newer(run_dir: Path, step: int) -> None:
    """Delete the checkpoint files newer than ``step`` (those a resume skipped), manifests first."""
    directory = Path(run_dir) / "checkpoints"
    for s in checkpoint_steps(directory):
        if s > step:
            for name in reversed(checkpoint_names(s)):
                (directory / name).unlink(missing_ok=True)
