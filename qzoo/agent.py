"""The one deep Q-learning agent. Variants (Double DQN, dueling, PER, n-step, noisy nets, C51, augmentation) are
settings that change which pure target/loss function it calls or which network it was given, never a
subclass. Components are passed in and wired in one place (:func:`build_agent`)."""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable

import numpy as np
import torch

from qzoo.config import Config
from qzoo.fastpath import FusedAdamStep, MLPPhase, clip_grad_norm
from qzoo.fastpath_cnn import CenteredRMSpropStep, MinAtarPhase
from qzoo.losses import categorical_loss, categorical_projection, q_learning_target, td_loss, td_loss_grad
from qzoo.networks import MLPBackprop, NatureCNN, QNetwork, build_q_network, numpy_forward
from qzoo.replay import Batch, ReplayBuffer, batch_slice
from qzoo.second_thread import SecondThread
from qzoo.split_grads import WeightGrads


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class QAgent:
    def __init__(self, q_net: QNetwork, optimizer: torch.optim.Optimizer, n_actions: int, *, double: bool,
                 loss: str, max_grad_norm: float, device: torch.device, noisy: bool = False):
        self.q_net = q_net.to(device)
        self.target_net = copy.deepcopy(q_net).to(device).requires_grad_(False)
        self.optimizer = optimizer
        self.params = [p for p in self.q_net.parameters() if p.requires_grad]
        self.n_actions = n_actions
        self.double = double
        self.noisy = noisy
        self.loss_kind = loss
        self.max_grad_norm = max_grad_norm
        self.device = device
        self._loss_sum = torch.zeros((), device=device)  # running sums since the last pop_metrics()
        self._q_sum = torch.zeros((), device=device)
        self._updates_at_pop = 0
        self.updates = 0
        self._copied_at_update: int | None = None  # ``updates`` at the last hard target sync (None: none since load)
        self.lazy_sync = False  # hard syncs leave the weights in the online net (sync_target); set by build_agent
        self._target_is_online = False  # a lazy sync's weights are the online net's (until the next update)
        # Acting runs one tiny forward pass per env step, where torch's per-call overhead (~100 us) is most of
        # the cost; a plain MLP on the CPU is evaluated in numpy on views of the live parameters instead.
        self._numpy_q = numpy_forward(self.q_net) if device.type == "cpu" else None
        # Learning: a plain MLP's backward pass is written out (no autograd graph), and fused Adam is stepped
        # directly; both are the same arithmetic with less per-call overhead (see MLPBackprop, FusedAdamStep).
        self._backprop = MLPBackprop.of(self.q_net)
        self._adam = FusedAdamStep.of(optimizer, self.params)
        # ... and a whole phase of such updates on uniform batches runs in one loop over the products (MLPPhase)
        phase_kw = {"max_grad_norm": max_grad_norm, "loss": loss, "double": double}
        self._phase = MLPPhase.of(self._backprop, MLPBackprop.of(self.target_net), self._adam, **phase_kw)
        # ... and so does the MinAtar CNN with centered RMSprop on the CPU (MinAtarPhase), which also acts
        self._rmsprop = CenteredRMSpropStep.of(optimizer, self.params) if device.type == "cpu" else None
        if self._phase is None and not noisy:
            self._phase = MinAtarPhase.of(self.q_net, self.target_net, self._rmsprop, **phase_kw)
        self._phase_q = self._phase.q_values if isinstance(self._phase, MinAtarPhase) else None
        # the target's pass and the Nature CNN's weight gradients on a thread of their own (set by build_agent)
        self.second_thread: SecondThread | None = None
        self._weight_grads: WeightGrads | None = None
        self._beside = None  # the second thread's run, in a phase that uses it
        # acting_noise 'fresh': new noise before every action while training, from this generator (build_agent)
        self.acting_noise: torch.Generator | None = None

    @property
    def compiled_kernels_apply(self) -> bool:
        """Whether qzoo's compiled kernels (qzoo/native.py) would run this agent's updates: MLPPhase's loop, or
        MinAtarPhase's RMSprop step and convolution gradient."""
        return isinstance(self._phase, (MLPPhase, MinAtarPhase))

    # ---- acting -------------------------------------------------------------------------------------------
    def greedy(self, obs: np.ndarray) -> np.ndarray:
        if self.acting_noise is not None and self.q_net.training:  # (evaluation: the mean weights, no noise)
            self.q_net.reset_noise(self.acting_noise)
        if self._numpy_q is not None:
            return self._numpy_q(obs).argmax(axis=1)
        if self._phase_q is not None:
            return self._phase_q(torch.as_tensor(obs)).argmax(dim=1).numpy()
        with torch.no_grad():
            q = self.q_net(torch.as_tensor(obs, device=self.device))
        return q.argmax(dim=1).cpu().numpy()

    def act(self, obs: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
        """epsilon-greedy over a batch of observations (one per environment)."""
        return epsilon_greedy(self.greedy, obs, epsilon, rng, self.n_actions)

    # ---- learning -----------------------------------------------------------------------------------------
    def learn(self, replay: ReplayBuffer, n_updates: int, batch_size: int, step: int) -> tuple[float, float]:
        """A phase of ``n_updates`` gradient steps (:meth:`_learn`), with or without the second thread as
        :class:`qzoo.second_thread.SecondThread` says (the same numbers either way)."""
        second = self.second_thread
        if second is None:
            return self._learn(replay, n_updates, batch_size, step, threaded=False)
        threaded = second.use()
        if self._weight_grads is not None:
            self.q_net.torso.weight_grads = self._weight_grads if threaded else None
        self._beside = second.run if threaded else None  # (the Adam step's other half: FusedAdamStep.step)
        t0 = time.perf_counter()
        seconds = self._learn(replay, n_updates, batch_size, step, threaded=threaded)
        second.record(threaded, time.perf_counter() - t0)
        return seconds

    def _learn(self, replay: ReplayBuffer, n_updates: int, batch_size: int, step: int, *,
               threaded: bool) -> tuple[float, float]:
        """A phase of ``n_updates`` gradient steps on batches from ``replay``, handing new priorities back to it.
        Returns the seconds spent sampling and updating.

        The target network is frozen for the whole phase (it is synced between environment steps). So when the
        batches do not depend on the updates before them (uniform sampling) and the target net is deterministic
        (no noisy layers) with a scalar head, Q_target(s_t, .) of every batch of the phase comes from one batched
        forward pass instead of n_updates small ones: the same targets, a quarter less work per update. A plain MLP
        with direct fused Adam runs the whole phase in :class:`qzoo.fastpath.MLPPhase`, the MinAtar CNN with
        centered RMSprop on the CPU in :class:`qzoo.fastpath_cnn.MinAtarPhase` (bit-identical weights); other networks
        update batch by batch."""
        t0 = time.perf_counter()
        if replay.uses_priorities or self.noisy or self.q_net.support is not None:
            sample_s = 0.0
            for _ in range(n_updates):  # each batch is drawn with the priorities the previous update left
                t1 = time.perf_counter()
                batch = replay.sample(batch_size, step)
                sample_s += time.perf_counter() - t1
                replay.update_priorities(batch.indices, self.update(batch))
            return sample_s, time.perf_counter() - t0 - sample_s
        phase = replay.sample_phase(n_updates, batch_size, step)  # batch i: rows [i * batch_size, ...)
        t1 = time.perf_counter()
        if self._phase is not None and self._phase.takes(phase.obs_tm1):
            self._phase.run(*self._tensors(phase)[:5], n_updates, rows=phase.indices)  # losses: _drain_phase_metrics
            self.updates += n_updates
        else:
            obs_t = torch.as_tensor(phase.obs_t, device=self.device)
            # Synced since the last update (DrQ(eps) syncs every step): the target net holds the online weights,
            # so Double DQN's online Q(s_t, .) for the phase's first update is the target's, bit for bit
            just_synced = self.double and self._copied_at_update == self.updates
            if threaded:  # the target's pass runs on the second thread while the online passes run here
                pending = self.second_thread.forward(self.target(), obs_t)
                q_target_of = lambda i: lambda: pending.result()[i * batch_size:(i + 1) * batch_size]  # noqa: E731
                first_select = q_target_of(0) if just_synced else None
            else:
                with torch.no_grad():
                    q_target_t = self.target()(obs_t)
                q_target_of = lambda i: q_target_t[i * batch_size:(i + 1) * batch_size]  # noqa: E731
                first_select = q_target_t[:batch_size] if just_synced else None
            for i in range(n_updates):
                self.update(batch_slice(phase, i, batch_size), q_target_t=q_target_of(i),
                            q_select_t=first_select if i == 0 else None)
        return t1 - t0, time.perf_counter() - t1

    def _tensors(self, batch: Batch):
        as_t = lambda x: torch.as_tensor(x, device=self.device)  # noqa: E731
        weights = None if batch.weights is None else as_t(batch.weights)  # None: uniform sampling
        return (as_t(batch.obs_tm1), as_t(batch.action_tm1), as_t(batch.reward_t), as_t(batch.discount_t),
                as_t(batch.obs_t), weights)

    def update(self, batch: Batch, q_target_t: torch.Tensor | Callable[[], torch.Tensor] | None = None,
               q_select_t: torch.Tensor | None = None) -> torch.Tensor:
        """One gradient step on a batch. Returns the new priority of each sample (|TD error|, or the C51
        cross-entropy), detached, for a prioritized sampler. ``q_target_t``: the target net's Q(s_t, .) when
        already computed (scalar heads; see :meth:`learn`), or a function that returns it once the online net's
        forward pass is done (a pass in flight on the second thread); ``q_select_t``: likewise the online net's (Double
        DQN), also as such a function."""
        obs_tm1, action_tm1, reward_t, discount_t, obs_t, weights = self._tensors(batch)
        if self.noisy:  # fresh noise for this step, in both networks (Rainbow)
            self.q_net.reset_noise()
            self.target_net.reset_noise()
        for p in self.params:  # cheaper than optimizer.zero_grad()
            p.grad = None
        if self.q_net.support is None:
            loss, q_tm1, priorities = self._scalar_loss_and_grad(obs_tm1, action_tm1, reward_t, discount_t, obs_t,
                                                                 weights, q_target_t, q_select_t)
        else:
            losses, q_tm1, priorities = self._categorical_losses(obs_tm1, action_tm1, reward_t, discount_t, obs_t)
            loss = weighted_mean(losses, weights)
            loss.backward()
        if self._weight_grads is not None:  # (made on the second thread while the backward pass went on)
            self._weight_grads.collect()
        if self.max_grad_norm != math.inf:  # (inf: no clipping, and no norm to compute)
            clip_grad_norm([p.grad for p in self.params], self.max_grad_norm)
        if self._adam is not None:
            self._adam.step(beside=self._beside)
        else:
            self.optimizer.step()

        self.updates += 1
        self._loss_sum += loss.detach()
        self._q_sum += q_tm1.detach().mean()
        return priorities

    def _scalar_loss_and_grad(self, obs_tm1, action_tm1, reward_t, discount_t, obs_t, weights, q_target_t=None,
                              q_select_t=None):
        """y = r + discount * Q_target(s_t, argmax Q_select(s_t, .)); loss = mean_i w_i loss(Q(s_tm1, a_tm1), y),
        and its gradient in the parameters' ``.grad``. Returns (loss, Q(s_tm1, a_tm1), |y - Q(s_tm1, a_tm1)|).
        y is formed after the online forward pass at s_tm1 (which does not depend on it), so a target pass on
        another thread (``q_target_t`` a function) runs alongside that pass."""
        with torch.no_grad():
            if q_target_t is None:
                target_net = self.target()
                q_target_t = target_net(obs_t)
                if self.double and q_select_t is None and target_net is self.q_net:
                    q_select_t = q_target_t  # (a lazy sync: the online net's Q(s_t, .), just computed)
            if self.double and q_select_t is None:
                q_select_t = self.q_net(obs_t)
        action = action_tm1.unsqueeze(1)
        if self._backprop is None:
            q_tm1 = self.q_net(obs_tm1).gather(1, action).squeeze(1)
            target = self._td_target(reward_t, discount_t, q_target_t, q_select_t)
            loss = weighted_mean(td_loss(q_tm1, target, self.loss_kind), weights)
            loss.backward()
        else:  # plain MLP: dL/dQ(s_tm1, a_tm1) from the loss's formula, then back through the layers by hand
            q, inputs = self._backprop.forward(obs_tm1)
            q_tm1 = q.gather(1, action).squeeze(1)
            target = self._td_target(reward_t, discount_t, q_target_t, q_select_t)
            scale = 1.0 / len(q_tm1) if weights is None else weights * (1.0 / len(q_tm1))  # of the (weighted) mean
            grad_q_tm1 = td_loss_grad(q_tm1, target, scale, self.loss_kind)
            self._backprop.backward(torch.zeros_like(q).scatter_(1, action, grad_q_tm1.unsqueeze(1)), inputs)
            loss = weighted_mean(td_loss(q_tm1, target, self.loss_kind), weights)
        return loss, q_tm1, (target - q_tm1).detach().abs()

    @staticmethod
    @torch.no_grad()
    def _td_target(reward_t, discount_t, q_target_t, q_select_t) -> torch.Tensor:
        def value(q):
            return q() if callable(q) else q
        return q_learning_target(reward_t, discount_t, value(q_target_t), value(q_select_t))

    def _categorical_losses(self, obs_tm1, action_tm1, reward_t, discount_t, obs_t):
        """C51: project the target net's distribution at a* = argmax_a Q_select(s_t, a) onto the support and
        minimise the cross-entropy to the online distribution at a_tm1. Q_select is the online net with
        ``double`` (its expected Q picks a*), the target net otherwise."""
        batch = torch.arange(len(action_tm1), device=self.device)
        support = self.q_net.support
        with torch.no_grad():
            probs_t = self.target().logits(obs_t).softmax(dim=-1)  # (B, A, N)
            q_select_t = self.q_net(obs_t) if self.double else (probs_t * support).sum(dim=-1)
            best = q_select_t.argmax(dim=1)
            target_probs = categorical_projection(reward_t, discount_t, probs_t[batch, best], support)
        logits_tm1 = self.q_net.logits(obs_tm1)[batch, action_tm1]  # (B, N)
        losses = categorical_loss(logits_tm1, target_probs)
        q_tm1 = (logits_tm1.detach().softmax(dim=-1) * support).sum(dim=-1)
        return losses, q_tm1, losses.detach()

    @contextlib.contextmanager
    def evaluating(self):
        """Evaluation mode for the duration: noisy layers use their mean weights (deterministic)."""
        was_training = self.q_net.training
        self.q_net.eval()
        try:
            yield self
        finally:
            self.q_net.train(was_training)

    def pop_metrics(self) -> dict:
        """Mean loss and Q since the last call (one device sync per log interval, not per update)."""
        self._drain_phase_metrics()
        n = self.updates - self._updates_at_pop
        loss_sum, q_sum = self._loss_sum.item(), self._q_sum.item()
        self._loss_sum.zero_()
        self._q_sum.zero_()
        self._updates_at_pop = self.updates
        if n == 0:
            return {"loss": float("nan"), "q_mean": float("nan"), "interval_updates": 0}
        return {"loss": loss_sum / n, "q_mean": q_sum / n, "interval_updates": n}

    def _drain_phase_metrics(self) -> None:
        """Add the phase loop's logged losses and Q values (computed once per log interval) to the running sums."""
        sums = None if self._phase is None else self._phase.drain_metrics()
        if sums is not None:
            self._loss_sum += sums[0]
            self._q_sum += sums[1]

    @torch.no_grad()
    def set_learning_rate(self, learning_rate: float) -> None:
        """The optimizer's step size for the updates that follow (a schedule's value at the current step)."""
        self.optimizer.param_groups[0]["lr"] = float(learning_rate)

    @torch.no_grad()
    def sync_target(self, tau: float = 1.0) -> None:
        """theta_target <- tau * theta + (1 - tau) * theta_target  (tau = 1: hard copy). A hard copy with no update
        since the previous one is skipped: the target already holds these weights (RL Zoo's CartPole syncs every 10
        steps and trains every 256, so most copies would copy nothing new). Without ``no_grad`` the copy from weights
        that require gradients records autograd history on the target's weights: they turn into non-leaf tensors
        that require gradients, each sync chaining a node onto the last one's (~8 kB a sync, 1 GB over a DrQ(eps)
        run that syncs every step), and the Nature CNN's kept bfloat16 cast of a frozen layer is never used.

        With ``lazy_sync`` (set by :func:`build_agent` when the loop syncs after every update: DrQ(eps)) a hard
        sync copies nothing: until the next update the target's weights are the online net's, so the target pass
        reads the online net itself (:meth:`target`) — the same weights, the same values, without copying 4M
        floats per step (and the fc's bf16 cast is made once per update for both passes). The copy is made only
        when something reads ``target_net`` itself (:meth:`state_dict`)."""
        if tau >= 1.0 and self._copied_at_update == self.updates:
            return
        if tau >= 1.0 and self.lazy_sync:
            self._target_is_online = True
            self._copied_at_update = self.updates
            return
        self._materialize_target()  # (a soft update starts from the weights a lazy sync left in the online net)
        online, target = list(self.q_net.parameters()), list(self.target_net.parameters())
        if tau >= 1.0:
            torch._foreach_copy_(target, online)
            self._copied_at_update = self.updates
        else:
            torch._foreach_lerp_(target, online, tau)

    def target(self) -> QNetwork:
        """The network that holds the target's weights now: ``target_net``, or after a lazy sync the online net."""
        if not self._target_is_online:
            return self.target_net
        if self._copied_at_update != self.updates:  # an update since the lazy sync: those weights are gone
            raise RuntimeError("lazy_sync: the target was read after an update without a sync in between "
                               "(lazy_sync needs a hard sync after every update)")
        return self.q_net

    @torch.no_grad()
    def _materialize_target(self) -> None:
        """Copy the online weights into ``target_net`` if a lazy sync left them in the online net only."""
        net = self.target()
        if net is self.q_net:
            torch._foreach_copy_(list(self.target_net.parameters()), list(self.q_net.parameters()))
            self._target_is_online = False

    # ---- persistence --------------------------------------------------------------------------------------
    def is_finite(self) -> bool:
        """True when every weight of the online network is finite (a diverged run must not be checkpointed)."""
        return all(bool(torch.isfinite(p).all()) for p in self.q_net.parameters())

    def state_dict(self) -> dict:
        """Everything an update depends on: both networks (with the noisy layers' current noise, which
        their state dicts leave out), the optimizer, the update counter and the metric sums since the last
        ``pop_metrics``, so a resumed run logs and learns exactly as an uninterrupted one."""
        self._drain_phase_metrics()
        self._materialize_target()
        return {"q_net": self.q_net.state_dict(), "target_net": self.target_net.state_dict(),
                "optimizer": self.optimizer.state_dict(), "updates": self.updates,
                "noise": {"q_net": dict(self.q_net.named_buffers()),
                          "target_net": dict(self.target_net.named_buffers())},
                "metrics": {"loss_sum": self._loss_sum.cpu(), "q_sum": self._q_sum.cpu(),
                            "updates_at_pop": self._updates_at_pop},
                "acting_noise": None if self.acting_noise is None else self.acting_noise.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.q_net.load_state_dict(state["q_net"])
        self.target_net.load_state_dict(state["target_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        for step in (self._adam, self._rmsprop):
            if step is not None:
                step.forget_state()  # load_state_dict replaced the moment tensors
        self.updates = state["updates"]
        self._copied_at_update = None
        self._target_is_online = False
        with torch.no_grad():
            for name, net in (("q_net", self.q_net), ("target_net", self.target_net)):
                for buffer_name, buffer in net.named_buffers():
                    buffer.copy_(state["noise"][name][buffer_name])
        if self._phase is not None:
            self._phase.drain_metrics()  # (the losses of updates before the load are not this run's)
        if self.acting_noise is not None and state.get("acting_noise") is not None:
            self.acting_noise.set_state(state["acting_noise"])
        metrics = state["metrics"]
        self._loss_sum.copy_(metrics["loss_sum"])
        self._q_sum.copy_(metrics["q_sum"])
        self._updates_at_pop = metrics["updates_at_pop"]


def epsilon_greedy(greedy, obs: np.ndarray, epsilon: float, rng: np.random.Generator, n_actions: int) -> np.ndarray:
    """One action per observation: uniformly random with probability epsilon, else ``greedy(obs)``'s."""
    n = len(obs)
    if n == 1:  # the same two draws as below for n = 1 (a scalar draw takes what a size-1 draw takes), without
        explore, action = rng.random() < epsilon, rng.integers(0, n_actions)  # the array overhead: ~8 us a step
        return np.array([action if explore else greedy(obs)[0]], np.int64)
    explore = rng.random(n) < epsilon
    actions = rng.integers(0, n_actions, n)
    if not explore.all():  # skip the network entirely while every env explores
        actions = np.where(explore, actions, greedy(obs))
    return actions


def weighted_mean(losses: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """mean_i w_i loss_i (importance weights of prioritized replay), or the plain mean when ``weights`` is None."""
    return losses.mean() if weights is None else (weights * losses).mean()


def make_optimizer(config: Config, params) -> torch.optim.Optimizer:
    """Adam, or centered RMSprop as in the DQN / MinAtar papers. Fused kernels (one pass over all parameters)
    are several times faster than the per-tensor loop for the small networks of classic control."""
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.learning_rate, eps=config.optimizer_eps, fused=True)
    return torch.optim.RMSprop(params, lr=config.learning_rate, eps=config.optimizer_eps, alpha=0.95,
                               centered=True, foreach=True)


def build_agent(config: Config, observation_space, n_actions: int, device: torch.device) -> QAgent:
    q_net = build_q_network(config, observation_space, n_actions)
    agent = QAgent(q_net, make_optimizer(config, q_net.parameters()), n_actions, double=config.double,
                   loss=config.loss, max_grad_norm=config.max_grad_norm, device=device, noisy=config.noisy)
    agent.lazy_sync = syncs_after_every_update(config) and agent._phase is None
    if config.noisy and config.acting_noise == "fresh":
        agent.acting_noise = acting_noise_generator(config.seed, device)
    # target_thread: 'auto' here is the trainer's resolved value (two cores or more: timed, qzoo.actor)
    if config.target_thread in ("true", "auto") and agent._phase is None:
        agent.second_thread = SecondThread(adaptive=config.target_thread == "auto")
        if isinstance(q_net.torso, NatureCNN) and device.type == "cpu":
            agent._weight_grads = q_net.torso.weight_grads = WeightGrads(agent.second_thread.run)
    return agent


def acting_noise_generator(seed: int, device: torch.device) -> torch.Generator:
    """The generator of ``acting_noise: fresh``: seeded from ``seed`` and a tag of its own, so its draws are not
    torch's global stream (which ``torch.manual_seed(seed)`` starts at the same state for the initial weights)."""
    state = np.random.SeedSequence([seed, 0x6E6F6973]).generate_state(2, dtype=np.uint32)  # (tag: "nois")
    return torch.Generator(device=device).manual_seed(int(state[0]) << 32 | int(state[1]))


def syncs_after_every_update(config: Config) -> bool:
    """Whether the training loop hard-syncs the target after every update and before anything else reads it:
    a sync crossed at every vector step (interval <= n_envs), one update per phase, no noisy layers (the target
    draws noise of its own). DrQ(eps): interval 1. (The phase loops of MLPs and the MinAtar CNN read the target's
    tensors directly: build_agent leaves them eager.)"""
    return (config.tau >= 1.0 and config.target_update_interval <= config.n_envs and not config.noisy
            and config.updates_per_phase == 1)
