"""What a training run leaves behind, shared by both loops (:func:`qzoo.trainer.train`,
:func:`qzoo.tabular.train_tabular`): the loggers of a run directory (progress.csv, evaluations.csv, TensorBoard),
the recent-episode statistics and the live progress display, evaluation records (and the best model), the
SIGINT/SIGTERM handling that stops a loop after a step, and the result a loop returns.

Videos taken during training are :func:`qzoo.video.capture_training`; model and checkpoint files are
:mod:`qzoo.checkpoint`'s.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qzoo import checkpoint as ckpt
from qzoo.config import Config
from qzoo.evaluation import EvalResult
from qzoo.logger import CSVWriter, Logger, TensorBoardWriter

# return_*: episodes as the agent learns from them (for Atari: one life, clipped rewards); game_score_mean: the raw
# score of recent whole games (Atari only, empty otherwise).
PROGRESS_COLUMNS = ["step", "episodes", "return_mean", "return_last", "game_score_mean", "length_mean", "q_mean",
                    "loss", "epsilon", "updates", "steps_per_s", "time_s"]
EVAL_COLUMNS = ["step", "return_mean", "return_std", "length_mean", "episodes", "time_s"]


@dataclass
class RunResult:
    run_dir: Path | None
    steps: int
    episodes: int
    final_eval: EvalResult | None
    best_eval_mean: float
    seconds: float  # whole call, including the final evaluation
    loop_seconds: float  # the training loop alone (what steps/s figures are computed from)
    interrupted: bool = False
    agent: object = None
    timing: dict | None = None  # seconds in env stepping / acting / sampling / updating
    checkpoint: Path | None = None  # the last checkpoint written


def crossed(step: int, advanced: int, interval: int) -> bool:
    """True when the step counter passed a multiple of ``interval`` while advancing by ``advanced``."""
    return interval > 0 and step // interval > (step - advanced) // interval


def mean_or_nan(values) -> float:
    return float(np.mean(values)) if values else float("nan")


class ProgressLog:
    """Recent-episode statistics and the progress.csv row (with the live display), for every training loop."""

    def __init__(self, config: Config, logger: Logger, bar, out):
        self.logger, self.bar, self.out, self.total = logger, bar, out, config.n_timesteps
        self.returns, self.lengths = deque(maxlen=config.stats_window), deque(maxlen=config.stats_window)
        self.scores = deque(maxlen=config.stats_window)  # whole-game raw scores (Atari), fed by the loop
        self.episodes, self.last_return = 0, float("nan")
        self.start = self._last_time = time.perf_counter()
        self._last_step = 0

    def state_dict(self) -> dict:
        return {"episodes": self.episodes, "last_return": self.last_return, "returns": list(self.returns),
                "lengths": list(self.lengths), "scores": list(self.scores),
                "seconds": time.perf_counter() - self.start, "last_step": self._last_step}

    def load_state_dict(self, state: dict) -> None:
        """Continue the statistics (and time_s) of a checkpoint."""
        self.episodes, self.last_return = state["episodes"], state["last_return"]
        for name in ("returns", "lengths", "scores"):
            getattr(self, name).extend(state[name])
        self._last_time = time.perf_counter()
        self.start = self._last_time - state["seconds"]
        self._last_step = state["last_step"]

    def episode(self, episode_return: float, length: int) -> None:
        self.episodes += 1
        self.last_return = episode_return
        self.returns.append(episode_return)
        self.lengths.append(length)

    def dump(self, step: int, metrics: dict, epsilon: float, updates: int) -> dict:
        now = time.perf_counter()
        row = {"episodes": self.episodes, "return_mean": mean_or_nan(self.returns), "return_last": self.last_return,
               "game_score_mean": mean_or_nan(self.scores), "length_mean": mean_or_nan(self.lengths),
               "q_mean": metrics["q_mean"], "loss": metrics["loss"], "epsilon": epsilon, "updates": updates,
               "steps_per_s": (step - self._last_step) / max(now - self._last_time, 1e-9), "time_s": now - self.start}
        for key, value in row.items():
            self.logger.record(key, value)
        self.logger.dump(step)
        show_progress(self.bar, self.out, row, step, step - self._last_step, self.total)
        self._last_step, self._last_time = step, now
        return row


def open_outputs(config: Config, run_dir: Path | None, command: str, out, resume_step: int | None = None):
    """Loggers (and the progress bar) of a run; ``resume_step``: continue the logs of the run in ``run_dir``
    from that step (later rows, written before the run died, are dropped)."""
    writers, eval_writers = [], []
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.write_config(run_dir, config)
        with open(run_dir / "command.txt", "a" if resume_step is not None else "w") as f:
            f.write(command + "\n")
        if resume_step is not None:
            ckpt.discard_newer(run_dir, resume_step)
            ckpt.rewind_logs(run_dir, resume_step, finishing=resume_step >= config.n_timesteps)
        append = resume_step is not None
        writers.append(CSVWriter(run_dir / "progress.csv", PROGRESS_COLUMNS, append=append))
        eval_writers.append(CSVWriter(run_dir / "evaluations.csv", EVAL_COLUMNS, append=append))
        if config.tensorboard:
            tb = TensorBoardWriter(run_dir / "tensorboard", "train",
                                   purge_step=None if resume_step is None else resume_step + 1)
            writers.append(tb)
            eval_writers.append(_Prefixed(tb, "eval"))
    bar = None
    if config.progress_bar and out is not None and getattr(out, "isatty", lambda: False)():
        from tqdm import tqdm

        bar = tqdm(total=config.n_timesteps, initial=resume_step or 0, unit="step", dynamic_ncols=True, file=out,
                   smoothing=0.1)
    return Logger(writers), Logger(eval_writers), bar


class _Prefixed:
    """Reuse one TensorBoard writer under another tag prefix (so both logs land in one event file)."""

    def __init__(self, tb: TensorBoardWriter, prefix: str):
        self.tb, self.prefix = tb, prefix

    def write(self, values: dict, step: int) -> None:
        prefix, self.tb.prefix = self.tb.prefix, self.prefix
        self.tb.write(values, step)
        self.tb.prefix = prefix

    def close(self) -> None:
        pass


def record_eval(eval_log: Logger, run_dir, config, agent, step, obs_shape, result: EvalResult, best: float,
                 start: float) -> float:
    for key, value in {"return_mean": result.mean, "return_std": result.std,
                       "length_mean": float(np.mean(result.lengths)), "episodes": len(result.returns),
                       "time_s": time.perf_counter() - start}.items():
        eval_log.record(key, value)
    eval_log.dump(step)
    if result.mean > best and run_dir is not None:
        ckpt.save(run_dir / ckpt.BEST_FILE, ckpt.model_payload(config, agent, step, obs_shape))
    return max(best, result.mean)


class StopSignals:
    """Once installed, SIGINT and SIGTERM ask the loop to stop after the current step (``signal`` is set); a second
    one raises KeyboardInterrupt at once. Only in the main thread (elsewhere Python delivers no signals)."""

    def __init__(self):
        self.signal: int | None = None
        self._previous: dict = {}

    def install(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        print(f"\nqzoo: {signal.Signals(signum).name}: stopping after this step to write a checkpoint "
              "(send it again to stop at once)", file=sys.stderr, flush=True)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def show_progress(bar, out, row: dict, step: int, advanced: int, total: int) -> None:
    """Live postfix on the progress bar; without a terminal, one plain line per 10% of training."""
    score = row.get("game_score_mean", math.nan)
    text = (f"return {row['return_mean']:.2f}  " + (f"game score {score:.1f}  " if math.isfinite(score) else "")
            + f"eps {row['epsilon']:.3f}  loss {row['loss']:.4g}  {row['steps_per_s']:.0f} steps/s")
    if bar is not None:
        bar.set_postfix_str(text, refresh=False)
    elif out is not None and (crossed(step, advanced, max(total // 10, 1)) or step >= total):
        print(f"step {step}/{total}  episodes {row['episodes']}  {text}", file=out, flush=True)
