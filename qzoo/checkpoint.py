"""Run directories, atomic checkpoints and resuming.

A run directory holds::

    config.yaml        the fully resolved configuration (reloadable with --preset)
    command.txt        the command line that started the run (and each --resume after it)
    progress.csv       one row per log interval
    evaluations.csv    one row per evaluation
    tensorboard/       TensorBoard event files
    checkpoints/       periodic checkpoints, each three files:
                         step_<N>.pt           training state: agent (networks, optimizer), RNGs, envs, logs
                         step_<N>.replay.npz   the replay buffer (when save_replay allows it)
                         step_<N>.json         manifest: size and sha256 of the other two, written last
    best_model.pt      Q-network with the best evaluation so far
    model.pt           final Q-network
    qtable.csv         --algo qlearning: the final Q-table, with best_qtable.csv, in place of the .pt files

Design decisions:
- Every file is written to a temporary name in the same directory, flushed, fsynced, then renamed (and the
  directory fsynced), so a crash never leaves a half-written file under a real name.
- A checkpoint counts only when its manifest exists and every file it lists has the recorded size and sha256.
  The manifest is written last, so a kill -9 at any moment leaves either a complete checkpoint or one that is
  skipped; a flipped byte (which torch.load may well accept) is caught by the checksum. ``--resume`` takes the
  newest checkpoint that verifies and names each one it skipped and why.
- Old checkpoints are deleted only after the new one is complete, so a failed write (disk full) leaves the
  previous checkpoint as it was; the files of the failed one are removed and the error says so.
- Everything the loop needs to continue is in the checkpoint: the step counters, the agent's state
  (:meth:`qzoo.agent.QAgent.state_dict`), the loop's and torch's RNG states, the training envs
  (:func:`qzoo.envs.vec_env_state`), the progress log's recent episodes, the best evaluation, and the replay
  buffer (:meth:`qzoo.replay.ReplayBuffer.state_dict`) in its own ``.npz`` (numpy arrays, no pickle). The
  epsilon and beta schedules are functions of the step, so they follow from the restored step.
- A resume changes nothing in the run directory until every check has passed (checkpoint intact, same env,
  observation shape, algorithm, settings and format version); then progress.csv and evaluations.csv are cut
  back to the checkpoint's step (rows written after it, before the run died, would otherwise repeat) and
  TensorBoard drops the events after it (``purge_step``).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from qzoo.config import TRI_STATE, Config, ConfigError, coerce, from_dict

FORMAT_VERSION = 2  # 2: the whole training state and a manifest; 1: agent, optimizer and step only
MODEL_VERSIONS = (1, 2)  # model files whose Q-network `qzoo eval` reads
MODEL_FILE, BEST_FILE, CONFIG_FILE = "model.pt", "best_model.pt", "config.yaml"
LOG_FILES = ("progress.csv", "evaluations.csv")
# save_replay auto: saved when the buffer's filled part is at most this big and (keep_checkpoints + 1) copies
# of it take at most half of the free disk space.
AUTO_REPLAY_MAX_BYTES = 4 * 2**30
# Settings a resume may change: they do not alter what the agent learns from the steps it takes (n_timesteps:
# a longer budget; the schedules keep their horizon through schedule_timesteps).
RESUME_MAY_CHANGE = ("n_timesteps", "schedule_timesteps", "device", "torch_threads", "progress_bar",
                     "keep_checkpoints", "checkpoint_freq", "save_replay")


class CheckpointError(RuntimeError):
    """A checkpoint or model file could not be written (disk full, permissions). ``str(err)`` is one line."""


# ---- files --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def run_dir_lock(run_dir: Path):
    """Hold an exclusive lock on ``run_dir`` for the duration (a flock on the directory itself: no file is created),
    so two processes never train into one run directory (e.g. the same ``--resume`` started twice). ConfigError in
    one line when another holder has it. The kernel drops the lock with its process, even after kill -9. A no-op
    where flock does not exist (Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(f"'{run_dir}' is in use by another qzoo process (a training or resume of this run is "
                              "still running); wait for it to end or stop it first") from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def new_run_dir(root: str | Path, config: Config) -> Path:
    """``<root>/<env_id>/<algo>_s<seed>_<YYYYmmdd-HHMMSS>[_k]`` (created, never reused)."""
    base = Path(root) / config.env_id / f"{config.algo}_s{config.seed}_{time.strftime('%Y%m%d-%H%M%S')}"
    path, k = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            k += 1
            path = base.with_name(f"{base.name}_{k}")


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


def save(path: Path, payload: dict) -> None:
    """A torch file (model.pt, best_model.pt), atomically; the file it replaces stays intact on failure."""
    path = Path(path)
    try:
        atomic_write(path, lambda f: torch.save(payload, f))
    except OSError as e:
        raise CheckpointError(f"could not write {path}: {describe_os_error(e)}; the previous {path.name} (if any) "
                              "is intact") from None


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


def write_config(run_dir: Path, config: Config) -> None:
    atomic_write_bytes(run_dir / CONFIG_FILE, yaml.safe_dump(config.to_dict(), sort_keys=False).encode())


def read_config(run_dir: Path) -> Config:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"'{run_dir}' is not a qzoo run directory (no {CONFIG_FILE})")
    try:
        with open(path) as f:
            values = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"'{path}' cannot be read ({type(e).__name__})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"'{path}' does not hold a mapping of settings")
    return from_dict(values)


def model_payload(config: Config, agent, step: int, obs_shape) -> dict:
    return {"format": "qzoo-model", "version": FORMAT_VERSION, "env_id": config.env_id, "algo": config.algo,
            "obs_shape": tuple(obs_shape), "n_actions": agent.n_actions, "step": step,
            "config": config.to_dict(), "q_net": agent.q_net.state_dict()}


def load(path: Path) -> dict:
    """A model file or checkpoint, for its Q-network (``qzoo eval``)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"model file '{path}' does not exist") from None
    except Exception as e:  # truncated / corrupted / not a torch file
        raise ConfigError(f"'{path}' is not a readable qzoo model ({type(e).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") not in ("qzoo-model", "qzoo-checkpoint"):
        raise ConfigError(f"'{path}' is not a qzoo model file")
    if payload.get("version") not in MODEL_VERSIONS:
        raise ConfigError(f"'{path}' has format version {payload.get('version')}; this qzoo reads "
                          f"{', '.join(map(str, MODEL_VERSIONS))}")
    return payload


# ---- checkpoints --------------------------------------------------------------------------------------------
_CHECKPOINT_FILE = re.compile(r"step_(\d+)\.(pt|replay\.npz|json)")


def checkpoint_files(run_dir: Path) -> list[Path]:
    """The checkpoints' ``step_N.pt`` files, oldest first (complete or not: see :func:`verify`)."""
    files = (Path(run_dir) / "checkpoints").glob("step_*.pt")
    return sorted(files, key=lambda p: int(re.findall(r"\d+", p.stem)[0]))


def _names(step: int) -> tuple[str, str, str]:
    return f"step_{step}.pt", f"step_{step}.replay.npz", f"step_{step}.json"


def find_model(run_dir: Path, which: str = "final") -> Path:
    """The model file of a run: ``final`` (model.pt, else the latest checkpoint) or ``best``."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        return run_dir
    if not run_dir.is_dir():
        raise ConfigError(f"run directory '{run_dir}' does not exist")
    candidates = [run_dir / BEST_FILE] if which == "best" else [run_dir / MODEL_FILE]
    candidates += checkpoint_files(run_dir)[::-1]
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(f"'{run_dir}' holds no model ({MODEL_FILE}, {BEST_FILE} or checkpoints/step_*.pt)")


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
        if self.latest is not None and self.latest.name == _names(step)[0]:
            return self.latest
        self.directory.mkdir(exist_ok=True)
        arrays = flatten(replay.state_dict())
        with_replay = self._keep_replay(sum(a.nbytes for a in arrays.values()))
        payload = {"format": "qzoo-checkpoint", "version": FORMAT_VERSION, "env_id": self.config.env_id,
                   "algo": self.config.algo, "obs_shape": self.obs_shape, "n_actions": self.n_actions, "step": step,
                   "config": self.config.to_dict(), "replay": with_replay, **state}
        pt, npz, manifest = (self.directory / name for name in _names(step))
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
        complete = sorted(s for s in _steps(self.directory) if (self.directory / _names(s)[2]).is_file())
        keep = set(complete[-self.config.keep_checkpoints:]) | {s for s in complete if s > step}
        for s in _steps(self.directory):
            if s not in keep and s <= step:
                for name in reversed(_names(s)):
                    (self.directory / name).unlink(missing_ok=True)
        for tmp in self.directory.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def _steps(directory: Path) -> list[int]:
    if not directory.is_dir():
        return []
    return sorted({int(m.group(1)) for p in directory.iterdir() if (m := _CHECKPOINT_FILE.fullmatch(p.name))})


def verify(directory: Path, step: int) -> str | None:
    """None when checkpoint ``step`` is complete and intact, else why not (a phrase)."""
    manifest_path = Path(directory) / _names(step)[2]
    if not manifest_path.is_file():
        return "no manifest (its write was interrupted, or an older qzoo wrote it)"
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        assert _names(step)[0] in files
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


@dataclass
class Resume:
    """A verified checkpoint to continue from."""

    path: Path  # step_N.pt
    payload: dict
    replay_path: Path | None  # None: saved without its replay buffer
    skipped: list[str]  # newer checkpoints that failed verification, with the reason

    @property
    def step(self) -> int:
        return int(self.payload["step"])


def resume_config(run_dir: Path, n_timesteps: int | None = None, changes: dict | None = None) -> Config:
    """The configuration to resume ``run_dir`` with: its config.yaml, a longer ``n_timesteps`` if given (the
    schedules keep their horizon) and ``changes`` to the settings a resume may change."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory '{run_dir}' does not exist")
    config = read_config(run_dir)
    if config.is_tabular:
        raise ConfigError(f"'{run_dir}' is a {config.algo} run; --resume continues deep Q-learning runs (a Q-table "
                          "run is short: start it again)")
    changes = dict(changes or {})
    refused = sorted(set(changes) - set(RESUME_MAY_CHANGE))
    if refused:
        raise ConfigError(f"--resume keeps the run's settings; '{refused[0]}' cannot change (a resume may change: "
                          f"{', '.join(k for k in RESUME_MAY_CHANGE if k != 'schedule_timesteps')})")
    if n_timesteps is not None and n_timesteps != config.n_timesteps:
        changes.update(n_timesteps=n_timesteps, schedule_timesteps=config.schedule_horizon)
    return config.replace(**changes) if changes else config


def prepare_resume(run_dir: Path, n_timesteps: int | None = None, changes: dict | None = None
                   ) -> tuple[Config, Resume]:
    """(config, checkpoint) to continue ``run_dir`` with (:func:`resume_config`, :func:`find_resumable`)."""
    from qzoo.envs import check_env

    config = resume_config(run_dir, n_timesteps, changes)
    info = check_env(config)
    return config, find_resumable(run_dir, config, info.observation_space.shape, info.n_actions)


def find_resumable(run_dir: Path, config: Config, obs_shape, n_actions: int) -> Resume:
    """The newest checkpoint of ``run_dir`` that verifies, checked against ``config`` and the env as it is now;
    ConfigError (one line naming what differs) when there is none or it does not fit. Reads only."""
    directory = Path(run_dir) / "checkpoints"
    steps = _steps(directory)[::-1]
    if not steps:
        raise ConfigError(f"'{run_dir}' has no checkpoint to resume from (checkpoints/step_N.pt)")
    skipped = []
    for step in steps:
        problem = verify(directory, step)
        if problem is None:
            pt = directory / _names(step)[0]
            try:
                payload = torch.load(pt, map_location="cpu", weights_only=True)
                break
            except Exception as e:
                problem = f"{pt.name} cannot be read ({type(e).__name__})"
        skipped.append(f"step_{step}: {problem}")
    else:
        raise ConfigError(f"no intact checkpoint in '{directory}' ({'; '.join(skipped)})")
    _check_fits(pt, payload, config, tuple(obs_shape), n_actions)
    replay = directory / _names(step)[1] if payload["replay"] else None
    return Resume(pt, payload, replay, skipped)


def _check_fits(path: Path, payload, config: Config, obs_shape: tuple, n_actions: int) -> None:
    where = f"checkpoint {path.parent.parent.name}/checkpoints/{path.name}"
    if not isinstance(payload, dict) or payload.get("format") != "qzoo-checkpoint":
        raise ConfigError(f"{where} is not a qzoo checkpoint")
    if payload.get("version") != FORMAT_VERSION:
        raise ConfigError(f"{where} has format version {payload.get('version')}; this qzoo resumes format "
                          f"version {FORMAT_VERSION} only")
    if payload["env_id"] != config.env_id:
        raise ConfigError(f"{where} is from env '{payload['env_id']}', the run is on '{config.env_id}'")
    if payload["algo"] != config.algo:
        raise ConfigError(f"{where} is from algo '{payload['algo']}', the run is '{config.algo}'")
    if tuple(payload["obs_shape"]) != obs_shape or payload["n_actions"] != n_actions:
        raise ConfigError(f"{where} has observations {tuple(payload['obs_shape'])} and {payload['n_actions']} "
                          f"actions; '{config.env_id}' now gives {obs_shape} and {n_actions}")
    # (bf16 was a bool before it took 'auto': such checkpoints say false / true)
    saved = {k: coerce(k, v) if k in TRI_STATE else v for k, v in payload["config"].items()}
    now = config.to_dict()
    differ = [k for k in now if k not in RESUME_MAY_CHANGE and k in saved and saved[k] != now[k]]
    if differ:
        raise ConfigError(f"{where} was written with different settings than the run's config.yaml: "
                          + ", ".join(f"{k} {saved.get(k)!r} vs {now[k]!r}" for k in differ[:3]))
    if payload["step"] >= config.n_timesteps:
        raise ConfigError(f"{where} is at step {payload['step']}, the run's budget is {config.n_timesteps} steps: "
                          "pass a larger --total-timesteps to continue it")


def load_replay(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return unflatten({key: data[key] for key in data.files})


def discard_newer(run_dir: Path, step: int) -> None:
    """Delete the checkpoint files newer than ``step`` (those a resume skipped), manifests first."""
    directory = Path(run_dir) / "checkpoints"
    for s in _steps(directory):
        if s > step:
            for name in reversed(_names(s)):
                (directory / name).unlink(missing_ok=True)


def rewind_logs(run_dir: Path, step: int) -> None:
    """Cut progress.csv and evaluations.csv back to the rows at or before ``step`` (also dropping a line the
    process was killed in the middle of), so the resumed run appends without repeating a row."""
    for name in LOG_FILES:
        path = Path(run_dir) / name
        if not path.is_file():
            continue
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            rows = [row for row in reader if header and len(row) == len(header) and _step_of(row) <= step]
        if header is None:
            path.unlink()
            continue
        lines = [header, *rows]
        atomic_write(path, lambda f, lines=lines: f.write(_csv_text(lines).encode()))


def _step_of(row: list[str]) -> float:
    try:
        return int(row[0])
    except ValueError:
        return float("inf")


def _csv_text(rows: list[list[str]]) -> str:
    import io

    text = io.StringIO()
    csv.writer(text).writerows(rows)
    return text.getvalue()


# ---- resuming the loop ----------------------------------------------------------------------------------------
def training_state(*, step: int, vec_steps: int, obs, rng: np.random.Generator, best_eval: float, agent, progress,
                   envs) -> dict:
    """What the training loop holds besides the replay buffer, for :meth:`Checkpointer.save`."""
    from qzoo.envs import vec_env_state

    return {"step": step, "vec_steps": vec_steps, "obs": torch.from_numpy(np.array(obs)),
            "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "best_eval": best_eval, "agent": agent.state_dict(), "progress": progress.state_dict(),
            "envs": vec_env_state(envs)}


@dataclass
class Restored:
    envs: object  # the training vector env to continue with
    obs: np.ndarray
    step: int
    vec_steps: int
    best_eval: float
    learn_from: int  # learning resumes once step > learn_from (later than learning_starts while replay refills)


def restore(resume: Resume, config: Config, *, agent, replay, progress, envs, rng: np.random.Generator,
            out=None) -> Restored:
    """Load ``resume`` into the freshly built parts of a run and say, in one line, how it continues."""
    from qzoo.envs import restore_vec_env

    state = resume.payload
    step = state["step"]
    agent.load_state_dict(state["agent"])
    progress.load_state_dict(state["progress"])
    envs, exact = restore_vec_env(envs, state["envs"])
    notes = []
    if exact:
        obs = state["obs"].numpy()
    else:  # the envs cannot be snapshotted: new episodes, seeded from the run's seed and the step
        obs, _ = envs.reset(seed=config.seed + step)
        notes.append("the environments start new episodes (they cannot be snapshotted)")
    learn_from = config.learning_starts
    if resume.replay_path is not None:
        replay.load_state_dict(load_replay(resume.replay_path))
        if not exact:
            replay.reset()  # the unfinished episodes' pending steps belong to episodes that will not go on
    else:
        learn_from = step + max(config.learning_starts, config.batch_size)
        notes.append(f"the replay buffer was not saved: it refills for {learn_from - step} steps before learning")
    rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    if out is not None:
        skipped = "".join(f"; skipped {s}" for s in resume.skipped)
        print(f"qzoo: resuming from {resume.path.name} (step {step}){skipped}"
              + "".join(f"; {n}" for n in notes), file=out, flush=True)
    return Restored(envs, obs, step, state["vec_steps"], state["best_eval"], learn_from)
