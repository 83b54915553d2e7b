"""``qzoo bench``: run a named suite of (env, algo, seed) trainings and turn them into a results table.

    suites (qzoo/presets/suites.yml, extended by --suite-file)  ->  plan of runs  ->  worker processes
        -> <bench_dir>/<suite>/<env>/<algo>_s<seed>/  (a normal qzoo run directory, plus result.json)
        -> <bench_dir>/<suite>/results.csv, results.md (tables.py), plots (qzoo.plotting, when present)

Design decisions:
- Each run is the in-process :func:`qzoo.trainer.train` in a worker process (spawned, one torch thread each),
  never a re-run of the CLI.
- A run is finished when its ``result.json`` exists: it is written atomically, last, after the model file. The
  model file is not required, so a suite's small files committed without their models (benchmarks/results/,
  .gitignore) still count as finished on a fresh checkout. Rerunning the command skips finished runs (so an
  interrupted suite resumes, and a suite accumulates over days). An unfinished run continues from its newest intact
  checkpoint (``qzoo train --resume``'s machinery: the same rows and weights as an uninterrupted run) when that
  checkpoint holds the replay buffer and the run's recorded settings are the planned ones; otherwise it is redone
  from scratch. A finished run whose recorded settings differ from the planned ones is refused (one line), never
  silently reused. The tables (and plots) cover every finished run in the suite's directory, this invocation's and
  earlier ones' (other ``--envs``, ``--algos`` or ``--seeds``).
- The stable-baselines3 peer (``--peer sb3``) trains SB3's DQN on the same env, settings and seed in its own venv
  (:mod:`qzoo.bench.peer`), as ``sb3-dqn_s<seed>``; it takes a worker slot like any run.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from qzoo.config import ALGOS, TABULAR_ALGOS, ConfigError, defaults, from_dict
from qzoo.resolve import PRESET_DIR, load_yaml, parse_set, resolve

RESULT_FILE = "result.json"
PEERS = ("sb3",)
PEER_ALGO = "sb3-dqn"  # the label of the peer's runs in directories and tables
BENCH_SETTINGS = {"progress_bar": False, "torch_threads": 1}  # every bench run; --set may override
# settings that change how a run is kept and shown, not what it computes: a finished run recorded with other values
# of these still counts as the planned run
BOOKKEEPING = ("checkpoint_freq", "keep_checkpoints", "save_replay", "progress_bar", "tensorboard", "torch_threads",
               "log_interval", "video_every", "target_thread")


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    settings: dict  # for every run of the suite
    envs: dict  # env id -> settings for that env


@dataclass(frozen=True)
class Job:
    env_id: str
    algo: str  # a qzoo algo, or PEER_ALGO
    seed: int
    config: dict  # the resolved qzoo config (for the peer: the dqn config it mirrors)
    run_dir: str

    @property
    def impl(self) -> str:
        return "sb3" if self.algo == PEER_ALGO else "qzoo"


# ---- suites ------------------------------------------------------------------------------------------------------
def _parse_suites(data, where: str) -> dict[str, Suite]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a mapping of suite names to suites")
    suites = {}
    for name, body in data.items():
        if not isinstance(body, dict) or "envs" not in body:
            raise ConfigError(f"{where}: suite '{name}' must be a mapping with an 'envs' list or mapping")
        envs = body["envs"]
        if isinstance(envs, list) and all(isinstance(e, str) for e in envs):
            envs = {e: {} for e in envs}
        if not isinstance(envs, dict) or not envs or not all(isinstance(v or {}, dict) for v in envs.values()):
            raise ConfigError(f"{where}: suite '{name}': 'envs' must be a non-empty list of env ids or a mapping "
                              "of env ids to settings")
        settings = body.get("settings") or {}
        if not isinstance(settings, dict):
            raise ConfigError(f"{where}: suite '{name}': 'settings' must be a mapping of settings")
        unknown = set(body) - {"description", "settings", "envs"}
        if unknown:
            raise ConfigError(f"{where}: suite '{name}' has unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                              "allowed: description, settings, envs")
        suites[str(name)] = Suite(str(name), str(body.get("description", "")), dict(settings),
                                  {str(k): dict(v or {}) for k, v in envs.items()})
    return suites


def load_suites(suite_file: str | Path | None = None) -> dict[str, Suite]:
    """The built-in suites, with those of ``suite_file`` added (a suite of the same name replaces the built-in)."""
    suites = _parse_suites(load_yaml(PRESET_DIR / "suites.yml"), "suites.yml")
    if suite_file:
        suites.update(_parse_suites(load_yaml(Path(suite_file)), f"suite file '{suite_file}'"))
    return suites


# ---- the plan ----------------------------------------------------------------------------------------------------
def plan(suite: Suite, algos: list[str], seeds: list[int], bench_dir: Path, *, peer: str | None = None,
         n_timesteps: int | None = None, sets: list[str] | None = None, envs: list[str] | None = None) -> list[Job]:
    """Every (env, seed, algo) run of the suite, each config resolved and its env checked before anything runs.
    Order: env, seed, algo (the peer right after qzoo's runs of the same env and seed)."""
    from qzoo.env_ids import is_minatar_id
    from qzoo.envs import check_env

    deep = [a for a in ALGOS if a not in TABULAR_ALGOS]
    if not algos:  # `--algos ""` or `--algos ,`: a suite of no runs
        raise ConfigError(f"--algos names no algorithm; give a comma-separated list of: {', '.join(deep)}")
    for algo in algos:
        if algo not in ALGOS or algo in TABULAR_ALGOS:
            raise ConfigError(f"unknown algorithm '{algo}' in --algos; allowed: {', '.join(deep)}")
    if peer is not None and peer not in PEERS:
        raise ConfigError(f"unknown peer '{peer}'; allowed: {', '.join(PEERS)}")
    env_ids = list(suite.envs)
    if envs:
        missing = [e for e in envs if e not in suite.envs]
        if missing:
            raise ConfigError(f"--envs: '{missing[0]}' is not in suite '{suite.name}' (it has: {', '.join(env_ids)})")
        env_ids = [e for e in env_ids if e in envs]
    user_sets = parse_set(sets or [])
    jobs = []
    for env_id in env_ids:
        if peer == "sb3" and "/" in env_id and not is_minatar_id(env_id):
            raise ConfigError(f"--peer sb3 runs classic-control and MinAtar envs; suite '{suite.name}' has "
                              f"'{env_id}'")
        configs = {}
        for algo in algos + ([PEER_ALGO] if peer else []):
            values = {**BENCH_SETTINGS, **suite.settings, **suite.envs[env_id]}
            if n_timesteps is not None:
                values["n_timesteps"] = n_timesteps
            try:
                base = resolve(env_id, "dqn" if algo == PEER_ALGO else algo, flags=values)
                config = from_dict({**base.to_dict(), **user_sets})
                check_env(config)
            except ConfigError as e:
                raise ConfigError(f"suite '{suite.name}', env '{env_id}', {algo}: {e}") from None
            configs[algo] = config
        for seed in seeds:
            for algo, config in configs.items():
                run_dir = bench_dir / suite.name / env_id / f"{algo}_s{seed}"
                jobs.append(Job(env_id, algo, seed, config.replace(seed=seed).to_dict(), str(run_dir)))
    return jobs


def finished_result(job: Job) -> dict | None:
    """The result of a finished run (result.json present; its model file may have been left behind), else None.
    A finished run recorded with other settings than ``job`` is refused."""
    run_dir = Path(job.run_dir)
    path = run_dir / RESULT_FILE
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
        model = run_dir / result.get("model", "model.pt")
    except (OSError, ValueError, AttributeError, TypeError):
        raise ConfigError(f"'{path}' is not a readable bench result; remove '{run_dir}' to run it again") from None
    # (results committed without their model, benchmarks/results/, still count: their settings are checked below)
    if model.is_file() and model.suffix == ".pt":  # a qzoo model: verified as every command that reads one
        from qzoo.checkpoint import load_model

        try:
            load_model(model)
        except ConfigError as e:
            raise ConfigError(f"{e}; remove '{run_dir}' to run it again") from None
    # a setting the run's qzoo did not have yet was at the default that a newer qzoo gave it (that default keeps
    # the old behaviour), so a run recorded before a setting was added still counts where the job keeps it there
    recorded = {**defaults(), **result.get("config", {})}
    differs = sorted(k for k in job.config if recorded.get(k) != job.config[k] and k not in BOOKKEEPING)
    if differs:
        key = differs[0]
        raise ConfigError(f"'{run_dir}' is a finished run with other settings ({key}: {recorded.get(key)!r}, now "
                          f"{job.config[key]!r}); use another --bench-dir or remove that directory")
    return result


# ---- one run (in a worker process) -------------------------------------------------------------------------------
def _atomic_json(path: Path, data: dict) -> None:
    from qzoo.checkpoint import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode())


def _last_return(progress_csv: Path) -> float | None:
    import csv

    if not progress_csv.is_file():
        return None
    with open(progress_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    values = [r["return_mean"] for r in rows if r.get("return_mean") not in (None, "", "nan")]
    return float(values[-1]) if values else None


def run_job(job: Job) -> dict:
    """Train one run into its directory (continuing it from its last checkpoint, see :func:`continuable`, or fresh)
    and write result.json last. Returns the result, or ``{"status": "interrupted"}`` when the run was stopped (no
    result.json: it counts as unfinished)."""
    import torch

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # (raises KeyboardInterrupt): a clean stop, as Ctrl-C
    torch.set_num_threads(1)
    run_dir = Path(job.run_dir)
    resume = continuable(job, run_dir)
    if resume is None:
        if run_dir.exists():  # an unfinished run's leftovers that cannot be continued: start over
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
    return train_job(job, run_dir, resume=resume, extra=None if resume is None else {"resumed_from": resume.step})


def continuable(job: Job, run_dir: Path):
    """The checkpoint an unfinished run continues from (a :class:`qzoo.checkpoint.Resume`), or None to start it
    again: when it has no intact checkpoint, its checkpoint left the replay buffer out (a resume would refill it:
    not the run the suite asks for), or its recorded settings are not the job's (an ``auto`` setting matches what
    it resolved to)."""
    from qzoo import checkpoint as ckpt
    from qzoo.config import TRI_STATE

    if job.impl != "qzoo" or not (run_dir / "checkpoints").is_dir():
        return None
    try:
        config, resume = ckpt.prepare_resume(run_dir)
    except ConfigError:
        return None
    recorded = config.to_dict()
    if resume.replay_path is None or any(
            recorded.get(k) != v and not (k in TRI_STATE and v == "auto") and k not in BOOKKEEPING
            for k, v in job.config.items()):
        return None
    return resume


def train_job(job: Job, run_dir: Path, resume=None, extra: dict | None = None) -> dict:
    """Train ``job`` into ``run_dir`` (continuing from ``resume``, a :class:`qzoo.checkpoint.Resume`, when given)
    and write result.json last, with ``extra`` added to it."""
    from qzoo import checkpoint as ckpt

    config = from_dict(job.config)
    result = {"env": job.env_id, "algo": job.algo, "impl": job.impl, "seed": job.seed,
              "n_timesteps": config.n_timesteps}
    if job.impl == "qzoo":
        from qzoo.trainer import train

        command = f"qzoo bench (run {job.env_id} {job.algo} seed {job.seed})"
        res = train(config, run_dir, command=command, out=None, **({"resume": resume} if resume else {}))
        if res.interrupted:
            return {**result, "status": "interrupted"}
        # a continued run's rate is over the steps this call took (the time before the stop is not known here)
        steps_run = res.steps - (resume.step if resume else 0)
        result.update(final_eval=res.final_eval.mean, final_eval_std=res.final_eval.std,
                      best_eval=res.best_eval_mean, train_return=_last_return(run_dir / "progress.csv"),
                      steps_per_s=steps_run / res.loop_seconds, steps_run=steps_run, seconds=res.seconds,
                      model=ckpt.MODEL_FILE)
    else:
        from qzoo.bench.peer import run_sb3

        ckpt.write_config(run_dir, config)
        r = run_sb3({**config.to_dict(), "run_dir": str(run_dir), "eval_episodes": config.eval_episodes,
                     "torch_threads": 1})
        result.update(final_eval=r["eval_mean"], final_eval_std=r["eval_std"], best_eval=None,
                      train_return=r["train_return"], steps_per_s=r["steps_per_s"], seconds=r["seconds"],
                      model="model.zip")
    result.update(status="finished", run_dir=str(run_dir), finished_at=time.strftime("%Y-%m-%d %H:%M:%S"),
                  worker_pid=os.getpid(), config=job.config, **(extra or {}))
    _atomic_json(run_dir / RESULT_FILE, result)
    return result


# ---- the suite ---------------------------------------------------------------------------------------------------
@dataclass
class BenchResult:
    suite_dir: Path
    results: list[dict]  # every finished run (skipped ones included)
    ran: int  # runs finished by this call
    skipped: int  # runs found finished
    failed: list[str]
    interrupted: bool = False


def run_suite(suite: Suite, jobs: list[Job], bench_dir: Path, n_workers: int = 1, log=sys.stderr,
              executor=None) -> BenchResult:
    """Run the unfinished jobs, then write the tables (and plots, when available). ``executor`` runs them
    (default: :class:`LocalPool` of ``n_workers`` processes; :class:`qzoo.bench.ray_runner.RayCluster` on Ray)."""
    # what writes the results at the end is imported now, with the tables: a suite runs for hours or days, and a
    # qzoo upgraded or edited meanwhile must not meet this process's modules half old, half new at its last step
    from qzoo import plotting  # noqa: F401  (used at the end, by _plot)
    from qzoo.bench import figures  # noqa: F401  (used at the end, by _plot)
    from qzoo.bench.tables import load_anchors, write_tables

    executor = executor or LocalPool(n_workers)
    suite_dir = Path(bench_dir) / suite.name
    suite_dir.mkdir(parents=True, exist_ok=True)
    done = {job.run_dir: r for job in jobs if (r := finished_result(job)) is not None}
    todo = [job for job in jobs if job.run_dir not in done]
    print(f"qzoo bench {suite.name}: {len(jobs)} runs, {len(done)} already finished, {len(todo)} to run "
          f"({executor.label}) -> {suite_dir}", file=log, flush=True)
    failed, interrupted = [], False
    if todo:
        failed, interrupted = executor.run(todo, done, suite_dir, log)
    results = [done[job.run_dir] for job in jobs if job.run_dir in done]
    # the tables, like the plot, cover every finished run of the suite directory: also those an earlier invocation
    # with other --envs / --algos / --seeds finished (a suite run one game at a time accumulates)
    anchors = load_anchors()
    summary = write_tables(suite_dir, suite_order(suite, results + earlier_results(suite_dir, jobs)), anchors,
                           suite.description)
    _plot(suite_dir, summary, anchors)
    ran = sum(job.run_dir in done for job in todo)
    return BenchResult(suite_dir, results, ran, len(jobs) - len(todo), failed, interrupted)


def suite_order(suite: Suite, results: list[dict]) -> list[dict]:
    """The results in the suite's env order (then algo, seed), whatever order the invocations ran them in, so
    the tables of a suite run one game at a time do not reorder their rows from one invocation to the next."""
    rank = {env: i for i, env in enumerate(suite.envs)}
    return sorted(results, key=lambda r: (rank.get(r["env"], len(rank)), r["env"], r["algo"], r["seed"]))


def earlier_results(suite_dir: Path, jobs: list[Job]) -> list[dict]:
    """The results of the finished runs in ``suite_dir`` (``<env>/<algo>_s<seed>/result.json``, env ids with a
    namespace one level deeper) that are not among ``jobs``, in path order; unreadable ones are left out."""
    planned = {Path(job.run_dir).resolve() for job in jobs}
    found = []
    for path in sorted([*suite_dir.glob(f"*/*_s*/{RESULT_FILE}"), *suite_dir.glob(f"*/*/*_s*/{RESULT_FILE}")]):
        if path.parent.resolve() in planned:
            continue
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(result, dict) and result.get("status") == "finished":
            found.append(result)
    return found


def run_line(k: int, n: int, job: Job, r: dict) -> str:
    resumed = "" if r.get("resumed_from") is None else f"  (continued from step {r['resumed_from']})"
    return (f"[{k}/{n}] {job.env_id} {job.algo} s{job.seed}: final eval {r['final_eval']:.2f}  "
            f"{r['steps_per_s']:.0f} steps/s  {r['seconds']:.0f} s{resumed}")


class LocalPool:
    """The runs in worker processes on this machine (spawned, one torch thread each)."""

    def __init__(self, n_workers: int = 1):
        self.n_workers = n_workers
        self.label = f"{n_workers} worker{'s' * (n_workers > 1)}"

    def run(self, todo: list[Job], done: dict, suite_dir: Path, log) -> tuple[list[str], bool]:
        """Run ``todo``; each finished run's result goes into ``done``. Returns (failures, interrupted)."""
        if any(job.impl == "sb3" for job in todo):
            from qzoo.bench.peer import ensure_sb3

            ensure_sb3(log=log)  # once, before the workers start
        failed, interrupted = [], False
        pending, in_flight, k = list(todo), {}, 0
        with ProcessPoolExecutor(self.n_workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            # a run is handed to a worker only when one is free (the executor would queue one more ahead, which a
            # worker then starts even after its previous run was interrupted)
            def hand_out() -> None:
                while pending and len(in_flight) < self.n_workers:
                    job = pending.pop(0)
                    try:
                        in_flight[pool.submit(run_job, job)] = job
                    except BrokenProcessPool as e:  # a worker died (e.g. killed): the rest cannot run here
                        failed.append(f"{job.env_id} {job.algo} seed {job.seed}: BrokenProcessPool: {e}")

            try:
                hand_out()
                while in_flight:
                    ready, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in ready:
                        job, k = in_flight.pop(future), k + 1
                        try:
                            r = future.result()
                        except Exception as e:  # one failed run does not stop the suite
                            failed.append(f"{job.env_id} {job.algo} seed {job.seed}: {type(e).__name__}: {e}")
                            print(f"[{k}/{len(todo)}] {job.env_id} {job.algo} s{job.seed}: FAILED ({e})", file=log,
                                  flush=True)
                            continue
                        if r.get("status") != "finished":  # its worker was signalled: start no more runs
                            interrupted = True
                            pending.clear()
                            continue
                        done[job.run_dir] = r
                        print(run_line(k, len(todo), job, r), file=log, flush=True)
                    hand_out()
            except KeyboardInterrupt:  # stop the running runs cleanly (each writes a checkpoint), start no more
                for process in list(getattr(pool, "_processes", {}).values()):
                    if process.is_alive():
                        process.terminate()
                pool.shutdown(wait=True, cancel_futures=True)
                interrupted = True
        return failed, interrupted


def _plot(suite_dir: Path, summary: list[dict], anchors: dict) -> None:
    """The suite's learning curves, as ``qzoo plot SUITE_DIR -o SUITE_DIR/curves.png`` draws them (a panel per env,
    a curve per algo with its bootstrap band across seeds; the peer's runs have no qzoo logs and are not drawn), and
    for Atari games the final scores beside the published anchors (``scores.png``, qzoo.bench.figures)."""
    from qzoo.bench.figures import write_score_figure
    from qzoo.plotting import plot

    write_score_figure(suite_dir, summary, anchors)

    try:
        plot([str(suite_dir)], suite_dir / "curves.png")
    except ConfigError:  # no finished qzoo run to draw (e.g. a peer-only suite)
        pass
