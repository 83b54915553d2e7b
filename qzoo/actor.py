"""Training phases, run in line or overlapped with acting (the ``overlap`` setting).

The loop calls :meth:`TrainingPhases.learn` every ``train_freq`` vector steps and acts with
:attr:`TrainingPhases.policy`. In line (``overlap`` off) that is ``agent.learn`` on the spot and the agent itself:
the loop as written, bit for bit. Overlapped, a phase's gradient steps run in a background thread while the loop
goes on stepping the envs and choosing actions for the next ``train_freq`` steps:

    step k (a phase):  wait for phase k - F  ->  acting copy <- online weights  ->  sample phase k's batches
                       ->  start its updates in the background
    steps k+1 .. k+F:  act with the acting copy (weights of phase k - F), step the envs, add to the replay

- Replay ratio: exactly as in line. Phase k's batches are drawn at step k, on the main thread, from the replay as
  it is at step k (the background job never touches the replay; new transitions land while it runs).
- Policy lag: at most one phase (one update at RL Zoo's gradient_steps 1). The actor reads a copy of the online
  network refreshed at each phase start, never the weights the optimizer is writing.
- Whatever reads what the updates write waits for the phase in flight first (:meth:`settle`): target syncs, the
  logged loss and Q, evaluation, checkpoints, videos and the end of the loop.
- Deterministic: every draw from a generator happens on the main thread in the same order run after run, and the
  updates of a phase are applied in order, so an overlapped run repeats itself exactly (it is not the in-line run).
- Prioritized replay with several gradient steps per phase draws a phase's batches together, with the priorities
  at the phase start (in line, each batch sees the previous update's priorities); new priorities reach the sum
  tree when the phase is waited for. With gradient_steps 1 (RL Zoo's Atari setting) that is the same thing.
- Resume: a checkpoint of an overlapped run holds the acting copy too (:meth:`TrainingPhases.acting_state`), so
  a resumed overlapped run continues exactly as the uninterrupted one (tested).

The background job is a single thread: PyTorch releases the GIL inside its kernels, so the update's convolutions
run while the main thread steps the emulator. With two cores give torch one thread (``torch_threads=1``):
learner and actor then have a core each (BENCHMARKS.md).
"""

from __future__ import annotations

import copy
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from qzoo.agent import QAgent, epsilon_greedy
from qzoo.config import Config
from qzoo.replay import Batch, ReplayBuffer, batch_slice


def resolve_overlap(config: Config, observation_shape: tuple) -> bool:
    """``overlap`` as a bool. 'auto' is off: acting one update behind ended lower than in line on each of three
    Pong seeds at 400k steps (and at the final evaluation of both Breakout seeds at 250k), not told apart from chance
    but not ruled out; and overlapping only pays with a core to spare for the actor (with one other busy process on
    2 cores the overlapped loop ran at 83-89 steps/s against 155 in line, bf16, Pong; BENCHMARKS.md), which the
    in-line loop now uses itself (``target_thread``: 2.02-2.21x SB3 in line against 1.78-2.04x overlapped)."""
    return config.overlap == "true"


def resolve_target_thread(config: Config, observation_shape: tuple, device: torch.device) -> str:
    """``target_thread`` as the run uses it: 'true' or 'false' as set; 'auto' stays 'auto' (each phase with or
    without the second thread, whichever was faster when last timed: qzoo.second_thread) for the Nature CNN on a
    CPU when the process may use two cores or more, and is 'false' elsewhere. The second thread runs the target's
    pass (a quarter of an update) and the weight gradients beside the online net's passes, changing no number."""
    if config.target_thread != "auto":
        return config.target_thread
    usable = (device.type == "cpu" and config.resolved_network(observation_shape) == "nature_cnn"
              and len(os.sched_getaffinity(0)) >= 2)
    return "auto" if usable else "false"


def learner_threads(config: Config, observation_shape: tuple, device: torch.device) -> int | None:
    """torch's intra-op threads for the run, or None to keep torch's default. ``torch_threads`` when set; for 0
    (auto): one thread for MLPs and the MinAtar CNN (small matrices lose more to thread hand-offs than they gain)
    and for the bf16 Nature CNN on a CPU (oneDNN's bf16 kernels at batch 32 ran 6x slower on two threads than on
    one with one other busy process: BENCHMARKS.md); with overlap, one core fewer than the process may use (the
    actor's); one with the target's pass on a thread of its own (``target_thread``: each pass gets a core);
    torch's default otherwise."""
    if config.torch_threads:
        return config.torch_threads
    if config.resolved_network(observation_shape) in ("mlp", "minatar"):
        return 1
    if config.overlap == "true":
        return max(1, len(os.sched_getaffinity(0)) - 1)
    if config.bf16 == "true" and device.type == "cpu":
        return 1
    if config.target_thread in ("true", "auto") and device.type == "cpu":  # (as resolved: qzoo.trainer)
        return 1
    return None


class ActingCopy:
    """A copy of the agent's online network that chooses actions while the learner updates the original."""

    def __init__(self, agent: QAgent):
        self.agent = agent
        self.net = copy.deepcopy(agent.q_net).requires_grad_(False)
        self.refresh()

    @torch.no_grad()
    def refresh(self) -> None:
        """Online weights (and noisy layers' noise, a buffer the state dict leaves out) -> the copy."""
        self.load(self.tensors(self.agent.q_net))

    @staticmethod
    def tensors(net: torch.nn.Module) -> list[torch.Tensor]:
        """Every parameter and buffer of ``net`` (non-persistent ones included), in a fixed order."""
        return [*net.parameters(), *net.buffers()]

    @torch.no_grad()
    def load(self, tensors: list[torch.Tensor]) -> None:
        torch._foreach_copy_(self.tensors(self.net), list(tensors))

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        if self.agent.acting_noise is not None:  # (acting_noise: fresh; drawn here, on the loop's thread)
            self.net.reset_noise(self.agent.acting_noise)
        with torch.no_grad():
            q = self.net(torch.as_tensor(obs, device=self.agent.device))
        return q.argmax(dim=1).cpu().numpy()

    def act(self, obs: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
        return epsilon_greedy(self.greedy, obs, epsilon, rng, self.agent.n_actions)


class PhaseBatches:
    """Stands in for the replay buffer during a background phase: hands out the batches drawn at the phase start
    and keeps the new priorities for the main thread to apply (the real buffer is being added to meanwhile)."""

    def __init__(self, replay: ReplayBuffer, n_updates: int, batch_size: int, step: int):
        self.uses_priorities = replay.uses_priorities
        self.phase = replay.sample_phase(n_updates, batch_size, step)
        self._next = 0
        self.priorities: list[tuple[np.ndarray, torch.Tensor]] = []

    def sample(self, batch_size: int, step: int = 0) -> Batch:
        self._next += 1
        return batch_slice(self.phase, self._next - 1, batch_size)

    def sample_phase(self, n_batches: int, batch_size: int, step: int = 0) -> Batch:
        return self.phase

    def update_priorities(self, indices: np.ndarray, td_errors) -> None:
        self.priorities.append((indices, td_errors))


class TrainingPhases:
    """The loop's learner: ``learn(step)`` every train_freq vector steps, ``settle()`` before anything reads what
    the updates write, ``policy`` to act with, ``close()`` at the end. Adds its seconds to ``timing`` (``sample``,
    ``update``; overlapped also ``wait``: the main thread blocked on the background phase)."""

    def __init__(self, agent: QAgent, replay: ReplayBuffer, config: Config, timing: dict, *, overlap: bool):
        self.agent, self.replay, self.timing = agent, replay, timing
        self.n_updates, self.batch_size = config.updates_per_phase, config.batch_size
        self.overlap = overlap
        self.policy = ActingCopy(agent) if overlap else agent
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="qzoo-learner") if overlap else None
        self._job: Future | None = None
        self._view: PhaseBatches | None = None

    def acting_state(self) -> list[torch.Tensor] | None:
        """What a checkpoint keeps to resume exactly: the acting copy's weights and noise (None in line)."""
        return [t.detach().clone() for t in ActingCopy.tensors(self.policy.net)] if self.overlap else None

    def load_acting_state(self, tensors: list[torch.Tensor] | None) -> None:
        """Act with a checkpoint's acting copy (kept as refreshed from the online net when it has none: a
        checkpoint of an in-line run)."""
        if self.overlap and tensors is not None:
            self.policy.load(tensors)

    def learn(self, step: int) -> None:
        if not self.overlap:
            sample_s, update_s = self.agent.learn(self.replay, self.n_updates, self.batch_size, step)
            self.timing["sample"] += sample_s
            self.timing["update"] += update_s
            return
        self.settle()
        self.policy.refresh()
        t0 = time.perf_counter()
        self._view = PhaseBatches(self.replay, self.n_updates, self.batch_size, step)
        self.timing["sample"] += time.perf_counter() - t0
        self._job = self._executor.submit(self._updates, self._view, step)

    def _updates(self, view: PhaseBatches, step: int) -> float:
        t0 = time.perf_counter()
        self.agent.learn(view, self.n_updates, self.batch_size, step)
        return time.perf_counter() - t0

    def settle(self) -> None:
        """Wait for the phase in flight (if any) and hand its new priorities to the replay buffer."""
        if self._job is None:
            return
        t0 = time.perf_counter()
        job, view, self._job, self._view = self._job, self._view, None, None
        self.timing["update"] += job.result()  # re-raises what the update raised
        self.timing["wait"] += time.perf_counter() - t0
        for indices, td_errors in view.priorities:
            self.replay.update_priorities(indices, td_errors)

    def close(self) -> None:
        """Wait for the phase in flight (its error, if any, is dropped: the loop is already ending) and stop the
        thread."""
        if self._executor is None:
            return
        try:
            self.settle()
        except Exception:
            pass
        self._executor.shutdown(wait=True)
