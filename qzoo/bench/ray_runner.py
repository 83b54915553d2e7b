"""``qzoo bench SUITE --ray [ADDRESS]``: every run of the suite is a Ray task (qzoo/scaleout.py for the cluster).

Design decisions:
- A run is a task with its resources declared (:func:`qzoo.scaleout.run_resources`); Ray places it. It trains into
  its normal run directory under the bench directory, which every node must see at the same path (checked on every
  node before anything is submitted, and again by each task where it lands). Relative paths are the driver's: a task
  works in the driver's directory, so results.csv and result.json name the same run directories as a local bench.
- **Faults.** A task whose worker process or node dies (a system failure) is retried by Ray up to
  :data:`qzoo.scaleout.MAX_RETRIES` times; the retry finds its own run's attempt file (the driver's token for that
  submission) and continues from the run's last intact checkpoint with qzoo's ``--resume`` machinery
  (:func:`qzoo.checkpoint.prepare_resume`; logs are cut back to the checkpoint), so the run's rows and numbers are
  those of an uninterrupted run wherever the env resumes exactly. The retry waits for the run directory's lock,
  which the kernel frees when the dead worker's process is gone, so two processes never write one run. A run that
  fails for its own reason (divergence, bad settings, a bench directory the node cannot reach) raises, and Ray does
  not retry application errors (``retry_exceptions=False``): it is reported once. The driver receives one result per
  task, so no run is counted twice.
- A leftover run directory from an earlier command (no attempt file with this submission's token) is redone from
  scratch, as a local bench does.
- Ctrl-C cancels the tasks: each running one gets KeyboardInterrupt, checkpoints and stops; rerunning the command
  redoes the unfinished runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import time
import uuid
from pathlib import Path

from qzoo import scaleout
from qzoo.bench import Job, _atomic_json, finished_result, run_line, train_job
from qzoo.config import ConfigError

ATTEMPT_FILE = ".qzoo-ray-attempt.json"
LOCK_WAIT_S = 120.0  # a retry waits this long for the dead attempt's process to let go of the run directory


class RayCluster:
    """The executor of :func:`qzoo.bench.run_suite` on a Ray cluster (``address`` None or "": a local instance).
    Entered before the suite starts: it connects and refuses runs bigger than any node before anything is
    written."""

    def __init__(self, address: str | None, jobs: list[Job]):
        self.address = address or None
        self.label = f"Ray cluster at {address}" if address else "a local Ray instance"
        self.jobs = jobs
        self._connection = None

    def __enter__(self) -> RayCluster:
        if any(job.impl != "qzoo" for job in self.jobs):
            raise ConfigError("--peer runs on this machine only (its venv is here); leave out --ray or --peer")
        self._connection = scaleout.connect(self.address)
        ray = self.ray = self._connection.__enter__()
        try:
            gpus = scaleout.cluster_gpus(ray)
            self.resources = {job.run_dir: scaleout.run_resources(job.config, gpus) for job in self.jobs}
            scaleout.check_fits(ray, {f"run {job.env_id} {job.algo} seed {job.seed}": self.resources[job.run_dir]
                                      for job in self.jobs})
        except BaseException:
            self._connection.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._connection.__exit__(*exc)

    def run(self, todo: list[Job], done: dict, suite_dir: Path, log) -> tuple[list[str], bool]:
        from tqdm import tqdm

        ray, resources = self.ray, self.resources
        failed, interrupted = [], False
        with scaleout.shared_dir(ray, suite_dir) as (marker, token):
            task = ray.remote(run_task)
            refs = {task.options(**resources[job.run_dir], max_retries=scaleout.MAX_RETRIES,
                                 retry_exceptions=False, name=f"qzoo {job.env_id} {job.algo} s{job.seed}")
                    .remote(job, os.getcwd(), marker, token, uuid.uuid4().hex): job for job in todo}
            pending = list(refs)
            bar = tqdm(total=len(todo), unit="run", desc=f"qzoo bench on Ray ({len(scaleout.alive_nodes(ray))} "
                       "nodes)", file=log, dynamic_ncols=True)
            try:
                while pending:
                    # a timeout, so that Ctrl-C is seen within a second (Ray's wait blocks signals while it waits)
                    ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                    for ref in ready:
                        job = refs[ref]
                        bar.update(1)
                        try:
                            r = ray.get(ref)
                        except ray.exceptions.RayError as e:  # the run's own error, or retries exhausted
                            failed.append(f"{job.env_id} {job.algo} seed {job.seed}: {scaleout.error_line(e)}")
                            bar.write(f"[{bar.n}/{len(todo)}] {job.env_id} {job.algo} s{job.seed}: FAILED "
                                      f"({scaleout.error_line(e)})", file=log)
                            continue
                        if r.get("status") != "finished":
                            interrupted = True
                            continue
                        done[job.run_dir] = r
                        bar.write(run_line(bar.n, len(todo), job, r) + _resumed(r), file=log)
            except KeyboardInterrupt:  # each running task gets KeyboardInterrupt: it checkpoints and stops
                for ref in pending:
                    ray.cancel(ref)
                ray.wait(pending, num_returns=len(pending), timeout=120)
                interrupted = True
            finally:
                bar.close()
        return failed, interrupted


def _resumed(r: dict) -> str:
    info = r.get("ray", {})
    if info.get("attempt", 1) == 1:
        return ""
    return f"  (attempt {info['attempt']}, resumed from step {info['resumed_from']})"


# ---- in the task, on a node ----------------------------------------------------------------------------------------
def run_task(job: Job, cwd: str, marker: str, token: str, attempt_token: str) -> dict:
    """One run, on whichever node Ray chose: check the bench directory, then train it fresh (first attempt) or
    continue it from its last checkpoint (a retry after its worker or node died)."""
    import ray
    import torch

    problem = scaleout.marker_problem(marker, token)
    if problem:
        raise ConfigError(f"node {socket.gethostname()} cannot use the bench directory: {problem}; it must be on "
                          "storage every node mounts at the same path")
    with contextlib.suppress(ValueError):  # SIGTERM stops a run cleanly, as in a local bench
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    before = os.getcwd()
    os.chdir(cwd)  # the driver's relative paths mean the same directories here
    try:
        run_dir = Path(job.run_dir)
        attempt_path = run_dir / ATTEMPT_FILE
        previous = _read_json(attempt_path)
        if previous.get("token") != attempt_token:  # first attempt: a fresh run directory, as a local bench
            if run_dir.exists():
                shutil.rmtree(run_dir)
            run_dir.mkdir(parents=True)
            previous = {}
        torch.set_num_threads(max(1, int(job.config.get("torch_threads") or 1)))
        with _wait_for_lock(run_dir):
            if previous and (finished := finished_result(job)) is not None:
                return finished  # the worker died after the run had finished
            resume = _resumable(run_dir) if previous else None
            attempt = previous.get("attempt", 0) + 1
            info = {"token": attempt_token, "attempt": attempt, "node_id": ray.get_runtime_context().get_node_id(),
                    "host": socket.gethostname(), "pid": os.getpid(),
                    "resumed_from": None if resume is None else resume.step}
            _atomic_json(attempt_path, info)
            if resume is None and previous:  # died before its first checkpoint: start the run again
                _clear(run_dir, keep=ATTEMPT_FILE)
            extra = {"ray": {k: info[k] for k in ("attempt", "node_id", "host", "resumed_from")}}
            return train_job(job, run_dir, resume=resume, extra=extra)
    finally:
        os.chdir(before)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _resumable(run_dir: Path):
    """The run's last intact checkpoint (qzoo train --resume's), or None when it has none yet."""
    from qzoo import checkpoint as ckpt

    try:
        return ckpt.prepare_resume(run_dir)[1]
    except ConfigError:  # no checkpoint yet (or none intact): the run starts again
        return None


def _clear(run_dir: Path, keep: str) -> None:
    for p in run_dir.iterdir():
        if p.name != keep:
            shutil.rmtree(p) if p.is_dir() else p.unlink()


@contextlib.contextmanager
def _wait_for_lock(run_dir: Path):
    """The run directory's lock, waiting for a dead attempt's process to let it go."""
    from qzoo.checkpoint import run_dir_lock

    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        lock = run_dir_lock(run_dir)
        try:
            lock.__enter__()
            break
        except ConfigError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    try:
        yield
    finally:
        lock.__exit__(None, None, None)
