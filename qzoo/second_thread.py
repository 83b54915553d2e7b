"""The second thread of an update (the ``target_thread`` setting), and whether a phase uses it.

While the calling thread runs the online network's passes, the second thread runs the target network's forward
pass at s_t (:meth:`qzoo.agent.QAgent.learn`), the Nature CNN's weight gradients (qzoo/split_grads.py) and half of
the Adam step of each large parameter (:meth:`qzoo.fastpath.FusedAdamStep.step`). Nothing is shared: the target's
weights are frozen between syncs, which happen between updates. The thread runs torch with the caller's number of
intra-op threads and inherits its floating-point environment (flushed denormals: it is started at the first job,
after the trainer has set them), so it computes the numbers the calling thread would.

So whether a phase uses the thread changes no number (tested bit for bit), only the wall time, which depends on
what else the machine runs: on an idle 2-core Zen 4 a bf16 Pong update took 11.7 ms with the thread and 19 ms
without; with another busy process on the other core, 20.6 ms with it and 18.9 ms without (BENCHMARKS.md). With
``adaptive`` (``target_thread: auto``) the phases are timed both ways in short windows — ``window`` phases with the
thread, ``window`` without, every ``period`` phases, after ``warmup`` phases — and the rest of each period uses
whichever had the lower median.
"""

from __future__ import annotations

import statistics
from concurrent.futures import Future, ThreadPoolExecutor

import torch


class SecondThread:
    def __init__(self, adaptive: bool = False, *, period: int = 2000, window: int = 40, warmup: int = 50):
        self._executor: ThreadPoolExecutor | None = None
        self.adaptive, self.period, self.window = adaptive, period, window
        self._phase = -warmup  # phases timed so far, counted from the end of the warm-up
        self._times: dict[bool, list[float]] = {True: [], False: []}
        self.choice = True  # outside the timing windows: use the thread?
        self.phases = self.threaded_phases = 0  # (reported: how many phases used the thread)

    # ---- jobs --------------------------------------------------------------------------------------------------
    def run(self, fn, *args) -> Future:
        """``fn(*args)`` on the thread."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="qzoo-second",
                                                initializer=torch.set_num_threads, initargs=(torch.get_num_threads(),))
        return self._executor.submit(fn, *args)

    def forward(self, net: torch.nn.Module, obs: torch.Tensor) -> Future:
        """``net(obs)`` without gradients, on the thread."""
        return self.run(forward_no_grad, net, obs)

    def close(self) -> None:
        """Stop the thread (a later job starts a new one)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # ---- whether a phase uses it -------------------------------------------------------------------------------
    def use(self) -> bool:
        """Whether the next phase runs its second-thread work there (else on the calling thread)."""
        if not self.adaptive or self._phase < 0:
            return self.choice
        at = self._phase % self.period
        return at < self.window or (at >= 2 * self.window and self.choice)

    def record(self, used: bool, seconds: float) -> None:
        """The wall time of a phase that ran with ``used`` (what :meth:`use` said)."""
        self.phases += 1
        self.threaded_phases += used
        if self.adaptive:
            at = self._phase % self.period
            if 0 <= self._phase and at < 2 * self.window:
                self._times[used].append(seconds)
                if at == 2 * self.window - 1:
                    self.choice = statistics.median(self._times[True]) <= statistics.median(self._times[False])
                    self._times = {True: [], False: []}
            self._phase += 1


def forward_no_grad(net: torch.nn.Module, obs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():  # (grad mode is per thread)
        return net(obs)
