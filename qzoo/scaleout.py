"""Scale-out on a Ray cluster, shared by ``qzoo bench --ray`` (qzoo/bench/ray_runner.py) and ``qzoo tune --ray``.

    --ray            a Ray instance started here for the command (loopback only, stopped at the end)
    --ray ADDRESS    a running cluster: the head's GCS address (``ray start --head`` prints it), or ``auto``

Design decisions:
- qzoo writes no scheduler: a bench run or a tuning worker is one Ray task with its resources declared
  (:func:`run_resources`: CPUs = the run's torch threads, one GPU when its device asks for CUDA), and Ray places it.
- **Shared storage, not shipping.** Runs write their normal run directories under the bench directory (and tuning
  workers their study storage), so that directory must be on storage every node mounts at the same path (NFS, a
  cluster file system; on one machine, any directory). Checkpoints then survive the node that wrote them, and a
  retried task continues from them. :func:`check_shared_dir` proves it before anything runs: the driver writes a
  marker file with a random token, and a task pinned to every alive node must read that token back at the same path
  and be able to create a file beside it; the first node that cannot is named in one line.
- Ray is optional (``pip install 'qzoo[ray]'``); only this module and the runners import it, inside functions.
- Bad input (Ray missing, an address nothing answers at, a run bigger than any node) is a ConfigError before
  anything is submitted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import uuid
from pathlib import Path

from qzoo.config import ConfigError

INSTALL = "pip install 'qzoo[ray]'"
MAX_RETRIES = 3  # a task whose worker process or node died is started again at most this many times
LOCAL_OBJECT_STORE = 100 * 2**20  # runs return small dicts; a local instance needs no big object store
CONNECT_TIMEOUT_S = 5.0
MARKER_PREFIX = ".qzoo-ray-"


def import_ray():
    """The ray module, or a one-line ConfigError saying how to install it."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # every worker's progress line reaches the driver, none merged
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--ray needs Ray, which is not installed in this environment: {INSTALL}") from None
    return ray


def _probe(address: str) -> None:
    """Refuse an address where nothing listens, quickly (ray.init would retry for a minute)."""
    if address == "auto":  # Ray finds the cluster started on this machine by `ray start`
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray takes a cluster address HOST:PORT (the head's address that `ray start --head` "
                          f"prints, e.g. 10.0.0.1:6379), or 'auto', got '{address}'")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise ConfigError(f"cannot reach a Ray cluster at {address} ({reason}); give the head node's address "
                          "(`ray start --head` prints it), or --ray alone for a local instance") from None


@contextlib.contextmanager
def connect(address: str | None):
    """Ray connected to the cluster at ``address`` (or to a local instance started here when None or empty),
    disconnected at the end."""
    if not address:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # one machine: Ray binds to loopback only
        # Ray starts its workers at nice 15; here, where they share the machine with everything else, the runs
        # keep the command's own priority, as a local --jobs pool's processes do
        os.environ.setdefault("RAY_worker_niceness", "0")
    ray = import_ray()
    # Ray's token authentication stays on (its default); its notice saying so would be the first line of every
    # command's output, bad-input messages included
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    common = {"include_dashboard": False, "log_to_driver": True, "configure_logging": False}
    if address:
        _probe(address)
    sigterm = signal.getsignal(signal.SIGTERM)  # Ray's core replaces it with a handler that aborts the process
    try:
        if address:
            ray.init(address=address, **common)
        else:  # nothing outside this machine joins it: loopback only
            ray.init(address="local", num_cpus=os.cpu_count(), object_store_memory=LOCAL_OBJECT_STORE, **common)
    except (ConnectionError, RuntimeError, ValueError) as e:
        lines = str(e).strip().splitlines()
        raise ConfigError(f"cannot connect to the Ray cluster at {address or 'a local instance'}: "
                          f"{lines[0] if lines else type(e).__name__}") from None
    if callable(sigterm):  # SIGTERM keeps qzoo's clean stop (runs checkpoint), as without --ray
        with contextlib.suppress(ValueError):  # (not the main thread)
            signal.signal(signal.SIGTERM, sigterm)
    try:
        yield ray
    finally:
        ray.shutdown()


def alive_nodes(ray) -> list[dict]:
    return [n for n in ray.nodes() if n.get("Alive")]


def run_resources(config: dict, cluster_gpus: float) -> dict:
    """A run's Ray resources: its torch threads as CPUs (0 = auto means one for the small networks bench runs),
    and one GPU when its device is CUDA, or 'auto' on a cluster that has GPUs."""
    device = str(config.get("device", "auto"))
    gpus = 1 if device.startswith("cuda") or (device == "auto" and cluster_gpus > 0) else 0
    return {"num_cpus": max(1, int(config.get("torch_threads") or 1)), "num_gpus": gpus}


def check_fits(ray, needs: dict[str, dict]) -> None:
    """Refuse (one line) a task bigger than every node: ``needs`` maps a description to its resources."""
    nodes = alive_nodes(ray)
    cpus = max((n["Resources"].get("CPU", 0) for n in nodes), default=0)
    gpus = max((n["Resources"].get("GPU", 0) for n in nodes), default=0)
    for what, res in needs.items():
        if res.get("num_cpus", 0) > cpus:
            raise ConfigError(f"{what} needs {res['num_cpus']} CPUs (its torch_threads), but the largest node of the "
                              f"Ray cluster has {cpus:g}; lower it (--set torch_threads=N) or add a bigger node")
        if res.get("num_gpus", 0) > gpus:
            raise ConfigError(f"{what} needs a GPU (device={res.get('device', 'cuda')}), but no node of the Ray "
                              "cluster has one; use --set device=cpu or add a GPU node")


def cluster_gpus(ray) -> float:
    return float(ray.cluster_resources().get("GPU", 0))


def marker_problem(marker: str, token: str) -> str | None:
    """Run on a node: None when ``marker`` holds ``token`` and a file can be created beside it, else why not."""
    path = Path(marker)
    if not path.parent.is_dir():
        return f"'{path.parent}' does not exist there"
    try:
        if path.read_text() != token:
            return f"'{path.parent}' there is another directory (the driver's marker file holds another token)"
    except FileNotFoundError:
        return f"'{path.parent}' there is another directory (the driver's marker file is not in it)"
    except OSError as e:
        return f"'{path}' cannot be read there ({e.strerror})"
    probe = path.with_name(f"{path.name}.{socket.gethostname()}.{os.getpid()}")
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        return f"'{path.parent}' is not writable there ({e.strerror})"
    return None


@contextlib.contextmanager
def shared_dir(ray, directory: Path, what: str = "the bench directory"):
    """Check that every alive node sees ``directory`` (the same one, writable); yields (marker path, token) for
    the tasks to check again where they land. ConfigError naming the first node that cannot."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    directory = Path(directory).resolve()
    token = uuid.uuid4().hex
    marker = directory / f"{MARKER_PREFIX}{token[:12]}"
    marker.write_text(token)
    try:
        probe = ray.remote(num_cpus=0, max_retries=0)(marker_problem)
        refs = [(node, probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
                 .remote(str(marker), token)) for node in alive_nodes(ray)]
        for node, ref in refs:
            try:
                problem = ray.get(ref, timeout=120)
            except ray.exceptions.TaskUnschedulableError:  # the node died since ray.nodes() listed it
                continue
            if problem:
                raise ConfigError(f"node {node['NodeManagerAddress']} (id {node['NodeID'][:8]}) cannot use {what}: "
                                  f"{problem}; runs write there, so it must be on storage every node mounts at the "
                                  "same path")
        yield str(marker), token
    finally:
        marker.unlink(missing_ok=True)


def error_line(e: BaseException) -> str:
    """One line for a failed task: the run's own exception (Ray wraps it), or what happened to its worker."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        e = cause
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def run_workers(address: str | None, worker, calls: list[tuple], say, config: dict | None = None,
                shared: Path | None = None) -> list[int]:
    """``worker(*call)`` for each call as a Ray task (``qzoo tune --ray``: Optuna workers sharing a study), on the
    cluster Ray is connected to (or connects to ``address``). Each task's resources are those of a run of
    ``config``; ``shared``: a directory every node must reach (the SQLite study's). Returns each task's exit code
    (1 for a task that failed or whose retries ran out, after saying why). Ctrl-C interrupts every task."""
    ray = import_ray()
    with contextlib.nullcontext(ray) if ray.is_initialized() else connect(address) as ray:
        resources = run_resources(config or {"torch_threads": 1, "device": "cpu"}, cluster_gpus(ray))
        check_fits(ray, {"a tuning worker": resources})
        with shared_dir(ray, shared, "the study directory") if shared else contextlib.nullcontext():
            task = ray.remote(worker).options(**resources, max_retries=MAX_RETRIES, retry_exceptions=False)
            refs = [task.remote(*call) for call in calls]
            try:
                while ray.wait(refs, num_returns=len(refs), timeout=1.0)[1]:  # Ctrl-C is seen between waits
                    pass
            except KeyboardInterrupt:  # every task gets KeyboardInterrupt: its trial is marked interrupted
                for ref in refs:
                    ray.cancel(ref)
                ray.wait(refs, num_returns=len(refs), timeout=120)
            codes = []
            for i, ref in enumerate(refs):
                try:
                    codes.append(ray.get(ref, timeout=0))
                except ray.exceptions.TaskCancelledError:
                    codes.append(130)
                except (ray.exceptions.RayError, TimeoutError) as e:
                    say(f"worker {i} failed: {error_line(e)}")
                    codes.append(1)
            return codes
