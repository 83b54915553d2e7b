"""Typed, validated run configuration.

One flat dataclass, :class:`Config`, holds every setting of a run. Names follow Stable-Baselines3 / RL Zoo
where the concept is the same, so a tuned RL Zoo ``dqn.yml`` entry carries over unchanged.

Where the values come from (defaults < preset < --preset FILE < flags < --set) is :mod:`qzoo.resolve`; this
module is the schema: the one :class:`Config` dataclass, each field with its help text and check (the settings'
reference that ``--help`` prints), and the coercion of YAML, CLI strings and Python values into each field's type.

Every value passes through :func:`coerce` (type) and its field's ``check`` (range) before anything runs;
a problem raises :class:`ConfigError` whose message is one line naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import textwrap
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

# dqn and rainbow (RL Zoo / Hessel et al. budgets); der and drq_eps (Atari-100k agents, Dopamine labs/atari_100k);
# qlearning (a Q-table). Each deep algo is a preset family of the one agent: qzoo/presets/<algo>.yml.
ALGOS = ("dqn", "rainbow", "der", "drq_eps", "qlearning")
TABULAR_ALGOS = ("qlearning",)
# The settings --algo qlearning reads; it ignores the others (network, replay, optimizer, n_envs, checkpoints).
TABULAR_SETTINGS = ("env_id", "env_kwargs", "gym_packages", "seed", "algo", "learning_rate", "gamma",
                    "exploration_schedule", "exploration_initial_eps", "exploration_final_eps", "exploration_fraction",
                    "exploration_delay", "exploration_decay_rate", "n_timesteps", "log_interval", "stats_window",
                    "eval_freq", "eval_episodes", "eval_epsilon", "video_every", "progress_bar", "tensorboard")


class ConfigError(ValueError):
    """A bad setting, value, env id or path. ``str(err)`` is a one-line message for the user."""


# --------------------------------------------------------------------------------------------------------------
# Checks: each returns None when the value is fine, or a phrase saying what is allowed.
# --------------------------------------------------------------------------------------------------------------
Check = Callable[[Any], "str | None"]


def positive(v) -> str | None:
    return None if v > 0 and math.isfinite(v) else "a finite number > 0"


def positive_or_inf(v) -> str | None:
    return None if v > 0 and not math.isnan(v) else "a number > 0 (inf: none)"


def non_negative(v) -> str | None:
    return None if v >= 0 and math.isfinite(v) else "a finite number >= 0"


def unit_interval(v) -> str | None:
    return None if 0.0 <= v <= 1.0 else "a number in [0, 1]"


def at_least(lo: int) -> Check:
    return lambda v: None if v >= lo else f"an integer >= {lo}"


def one_of(*choices: str) -> Check:
    return lambda v: None if v in choices else "one of " + ", ".join(repr(c) for c in choices)


def gradient_steps_check(v) -> str | None:
    return None if v >= 1 or v == -1 else "an integer >= 1, or -1 (as many as environment steps collected)"


def net_arch_check(v) -> str | None:
    return None if all(n >= 1 for n in v) else "a list of positive layer sizes, e.g. [256, 256]"


def tau_check(v) -> str | None:
    return None if 0.0 < v <= 1.0 else "a number in (0, 1] (1 = hard copy)"


def crop_check(v) -> str | None:
    ok = len(v) in (0, 4) and all(n >= 0 for n in v)
    return None if ok else "[] (no crop) or [top, bottom, left, right]: pixel rows/columns >= 0 to drop"


def seed_check(v) -> str | None:
    return None if 0 <= v <= 2**32 - 1 else "an integer in [0, 2**32 - 1] (4294967295)"


def noisy_sigma_check(v) -> str | None:  # float32 noise: a huge sigma0 overflows or swamps every weight
    return None if 0 < v <= 10 else "a number in (0, 10] (Fortunato et al. use 0.5)"


def env_kwargs_check(v) -> str | None:  # 'human' waits for a display; videos are rendered by qzoo itself
    return None if "render_mode" not in v else ("a mapping without 'render_mode' (qzoo renders its videos itself, "
                                                "with qzoo record and video_every; 'human' needs a display)")


def device_check(v) -> str | None:
    ok = v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit())
    return None if ok else "'auto', 'cpu', 'cuda' or 'cuda:N'"


def setting(default, help: str, check: Check | None = None, group: str = "agent"):
    """A config field carrying its own help text and range check (shown by ``qzoo train --help``)."""
    kw = {"default_factory": lambda: list(default)} if isinstance(default, list) else (
        {"default_factory": lambda: dict(default)} if isinstance(default, dict) else {"default": default})
    return field(metadata={"help": help, "check": check, "group": group}, **kw)


@dataclass(frozen=True)
class Config:
    # --- environment ---------------------------------------------------------------------------------------
    env_id: str = setting("CartPole-v1", "Gymnasium environment id", group="env")
    env_kwargs: dict = setting({}, "keyword arguments passed to gymnasium.make", env_kwargs_check, "env")
    gym_packages: list = setting([], "extra modules to import so that they register their env ids", group="env")
    n_envs: int = setting(1, "environments stepped in parallel (one batched action selection)", at_least(1), "env")
    seed: int = setting(0, "random seed (torch, numpy, environments)", seed_check, "env")
    # Atari (ALE ids only; qzoo/envs/atari.py): the DQN preprocessing, defaults as in Mnih et al. 2015.
    atari_protocol: str = setting(
        "nature", "(ALE) 'nature': no sticky actions, noop_max no-op starts, episodic_life; 'machado': sticky "
                  "actions (p=0.25), no no-op starts, no life-loss episodes (Machado et al. 2018, as ALE v5 "
                  "recommends; noop_max and episodic_life are then not used)", one_of("nature", "machado"), "env")
    noop_max: int = setting(30, "(ALE) up to this many no-op actions after a reset (random count; 0 = none)",
                            at_least(0), "env")
    frame_skip: int = setting(4, "(ALE) emulator frames per agent step (action repeated; max-pool of the last two "
                                 "frames)", at_least(1), "env")
    screen_size: int = setting(84, "(ALE) observation frames are resized to screen_size x screen_size (the Nature "
                                   "CNN needs >= 36)", at_least(36), "env")
    grayscale: bool = setting(True, "(ALE) grayscale frames (false: RGB, 3 channels per stacked frame)", group="env")
    frame_stack: int = setting(4, "(ALE) most recent frames stacked into one observation", at_least(1), "env")
    episodic_life: bool = setting(True, "(ALE) training episodes end at a life loss (the game goes on; evaluation "
                                        "always plays whole games)", group="env")
    fire_reset: bool = setting(True, "(ALE) press FIRE after a reset in games whose actions include it",
                               group="env")
    clip_reward: bool = setting(True, "(ALE) training rewards clipped to their sign {-1, 0, 1} (evaluation and "
                                      "game_score stay unclipped)", group="env")
    atari_crop: list = setting([], "(ALE) screen pixels dropped before resizing: [top, bottom, left, right] "
                                   "([] = none)", crop_check, "env")
    atari_backend: str = setting(
        "auto", "(ALE) training envs: 'auto' = 'wrappers' = gymnasium's wrappers, one pipeline per env, the same "
                "transitions as RL Zoo's AtariWrapper + 4-frame stack (the standard protocol); 'vector' = ale-py's "
                "C++ AtariVectorEnv, faster where cores are free but NOT the standard protocol: after a lost life "
                "no no-op/FIRE step and the frame stack carries on, a game reset presses FIRE for one frame, no-op "
                "counts from its own generator (grayscale only, no atari_crop, no env_kwargs)",
        one_of("auto", "vector", "wrappers"), "env")
    max_episode_frames: int = setting(108_000, "(ALE) a game is truncated after this many emulator frames (108000 "
                                               "= 30 minutes, the evaluation cap)", at_least(1), "env")
    # --- network ----------------------------------------------------------------------------------------------
    algo: str = setting("dqn", "algorithm preset family", one_of(*ALGOS), "network")
    network: str = setting("auto", "Q-network torso: mlp, nature_cnn (Mnih et al. 2015), minatar (conv 16 3x3 -> "
                                   "fc 128, Young & Tian 2019) or auto (mlp for flat observations, nature_cnn for "
                                   "images of at least 36x36, minatar for smaller grids)",
                           one_of("auto", "mlp", "nature_cnn", "minatar"), "network")
    net_arch: list = setting([64, 64], "hidden layer sizes of the MLP torso", net_arch_check, "network")
    conv_padding: str = setting("valid", "(nature_cnn) 'valid': no padding, as the Nature DQN and SB3 (84x84 -> 64 x "
                                         "7 x 7 features); 'same': TensorFlow's / flax's 'SAME' zero padding, as "
                                         "Dopamine's JAX networks (64 x 11 x 11)", one_of("valid", "same"), "network")
    weight_init: str = setting("torch", "initial weights of the convolutions and (non-noisy) linear layers: "
                                        "'torch' (PyTorch's defaults, as SB3) or 'xavier_uniform' (Glorot-uniform "
                                        "weights, zero biases, as Dopamine's JAX networks)",
                               one_of("torch", "xavier_uniform"), "network")
    # --- learner ----------------------------------------------------------------------------------------------
    learning_rate: float = setting(1e-4, "optimizer step size (dqn); step size alpha of the table update "
                                         "(qlearning)", positive)
    learning_rate_schedule: str = setting(
        "constant", "'constant', or 'linear': from learning_rate at step 0 down to 0 at the end of training "
                    "(over schedule_timesteps; RL Zoo's `learning_rate: lin_<value>`, which a preset may also "
                    "write); dqn and rainbow", one_of("constant", "linear"))
    optimizer: str = setting("adam", "optimizer", one_of("adam", "rmsprop"))
    optimizer_eps: float = setting(1e-8, "epsilon of Adam / RMSprop", positive)
    gamma: float = setting(0.99, "discount factor", unit_interval)
    double: bool = setting(False, "Double DQN target: online net picks argmax_a' Q(s',a'), target net evaluates it")
    dueling: bool = setting(False, "dueling head: Q = V + A - mean(A) (Wang et al. 2016)", group="network")
    noisy: bool = setting(False, "factorised Gaussian noisy linear layers (Fortunato et al. 2018); turns "
                                 "epsilon-greedy off", group="network")
    bf16: str = setting(
        "auto", "bfloat16 autocast for the Nature CNN torso (its output, the head, loss and optimizer stay float32): "
                "~1.7x faster updates where the hardware computes bf16 natively, ~10x slower where torch emulates "
                "it; 'auto' = on with CUDA or a CPU whose /proc/cpuinfo flags include avx512_bf16 or amx_bf16, off "
                "elsewhere; 'true' / 'false' force it. The run prints what auto chose and config.yaml records the "
                "resolved value (learning checks: BENCHMARKS.md, Atari)",
        one_of("auto", "true", "false"), "network")
    noisy_sigma: float = setting(0.5, "initial noise scale sigma0 of noisy layers", noisy_sigma_check,
                               "network")
    acting_noise: str = setting(
        "update", "noise a noisy net acts with while training: 'update' (the noise of the last update, drawn once "
                  "per update for both networks; fixed until learning starts) or 'fresh' (a new draw before every "
                  "action, from a generator of its own seeded by seed: Dopamine's full Rainbow agent, whose warm-up "
                  "actions then vary too); evaluation always uses the mean weights",
        one_of("update", "fresh"), "network")
    distributional: str = setting("none", "distributional head: none or c51 (Bellemare et al. 2017)",
                                  one_of("none", "c51"), "network")
    n_atoms: int = setting(51, "atoms of the c51 support", at_least(2), "network")
    v_min: float = setting(-10.0, "lowest value of the c51 support", group="network")
    v_max: float = setting(10.0, "highest value of the c51 support", group="network")
    n_step: int = setting(1, "n-step returns: bootstrap from gamma^n Q(s_t+n) (cut at terminations)", at_least(1),
                          "replay")
    prioritized: bool = setting(False, "proportional prioritized replay on a sum tree (Schaul et al. 2016); on its "
                                       "own (outside the rainbow preset) it usually wants about a quarter of the "
                                       "uniform-replay learning_rate, as in the paper (BENCHMARKS.md)",
                                group="replay")
    augmentation: str = setting(
        "none", "image augmentation of sampled batches (training only; acting and evaluation see raw frames): "
                "'random_shift' pads each frame stack by augmentation_pad pixels (edge replication) and crops it "
                "back at a random offset, independently for every sample and for s and s' (DrQ, Kostrikov et "
                "al. 2021); 'shift_intensity' is Dopamine's version (its DrQ(eps) runs): offsets in [-pad, pad - 1], "
                "then each sample's pixels times 1 + 0.05 clip(N(0, 1), -2, 2)",
        one_of("none", "random_shift", "shift_intensity"), "replay")
    augmentation_pad: int = setting(4, "largest shift of the augmentation, in pixels (DrQ: 4)", at_least(1),
                                    "replay")
    prioritized_alpha: float = setting(0.6, "priority exponent alpha (0 = uniform)", unit_interval, "replay")
    prioritized_beta: float = setting(0.4, "initial importance-sampling exponent beta, annealed to "
                                           "prioritized_beta_final over training", unit_interval, "replay")
    prioritized_beta_final: float = setting(
        1.0, "importance-sampling exponent at the end of training (1: Schaul et al.'s annealing; equal to "
             "prioritized_beta: a constant beta, as Dopamine's Rainbow, 0.5)", unit_interval, "replay")
    prioritized_eps: float = setting(1e-6, "added to |TD error| so no priority is zero", positive, "replay")
    loss: str = setting("huber", "TD loss", one_of("huber", "mse"))
    max_grad_norm: float = setting(10.0, "clip the global gradient norm to this value (inf: no clipping)",
                                   positive_or_inf)
    target_update_interval: int = setting(
        10000, "environment steps between target network updates", at_least(1))
    tau: float = setting(1.0, "target update coefficient (1 = hard copy, < 1 = Polyak averaging)", tau_check)
    # --- exploration ------------------------------------------------------------------------------------------
    exploration_initial_eps: float = setting(1.0, "epsilon at the start", unit_interval, "exploration")
    exploration_final_eps: float = setting(0.05, "epsilon after the decay", unit_interval, "exploration")
    exploration_fraction: float = setting(
        0.1, "fraction of n_timesteps over which epsilon decays linearly", unit_interval, "exploration")
    exploration_delay: int = setting(
        0, "environment steps at exploration_initial_eps before the linear decay starts (0, as SB3; Dopamine's "
           "agents hold it through their warm-up, min_replay_history)", at_least(0), "exploration")
    exploration_schedule: str = setting(
        "linear", "epsilon decay: 'linear' over exploration_fraction of n_timesteps, or 'exponential' per episode "
                  "(qlearning only): final + (initial - final) * exp(-exploration_decay_rate * episode)",
        one_of("linear", "exponential"), "exploration")
    exploration_decay_rate: float = setting(
        5e-4, "per-episode rate of the 'exponential' epsilon schedule (qlearning)", non_negative, "exploration")
    # --- replay -----------------------------------------------------------------------------------------------
    buffer_size: int = setting(1_000_000, "replay capacity in transitions", at_least(1), "replay")
    batch_size: int = setting(32, "transitions per gradient step", at_least(1), "replay")
    learning_starts: int = setting(100, "environment steps before learning (random actions unless "
                                        "warmup_actions is 'policy')", at_least(0), "replay")
    warmup_actions: str = setting(
        "random", "actions before learning_starts: 'random' (uniform, as SB3 and RL Zoo) or 'policy' (the agent's "
                  "own, epsilon-greedy or a noisy net's: Dopamine's noisy agents, whose epsilon is 0, act so from "
                  "the first step)", one_of("random", "policy"), "replay")
    # --- training loop ----------------------------------------------------------------------------------------
    n_timesteps: int = setting(100_000, "total environment steps (all envs together)", at_least(1), "train")
    train_freq: int = setting(4, "vector-env steps between training phases", at_least(1), "train")
    gradient_steps: int = setting(1, "gradient steps per training phase (-1: one per environment step collected)",
                                  gradient_steps_check, "train")
    device: str = setting("auto", "torch device: auto (CUDA when present), cpu, cuda, cuda:N", device_check,
                          "train")
    torch_threads: int = setting(0, "torch intra-op threads (0 = auto: 1 for MLPs and the MinAtar CNN, whose small "
                                    "matrices lose more to thread hand-offs than they gain, and for the bf16 Nature "
                                    "CNN on a CPU; with overlap, one core fewer than the process may use, the "
                                    "actor's; torch's default otherwise)",
                                 at_least(0),
                                 "train")
    overlap: str = setting(
        "auto", "run each training phase's gradient steps in a background thread while the envs step and actions "
                "are chosen for the next train_freq steps (qzoo/actor.py): the same replay ratio (one phase per "
                "train_freq steps, batches drawn at the phase's step), actions from weights at most one phase old; "
                "'auto' = off (it pays only with a core to spare for the actor; BENCHMARKS.md), 'true' / 'false' "
                "force it; config.yaml records the resolved value", one_of("auto", "true", "false"),
        "train")
    target_thread: str = setting(
        "auto", "run the target network's pass at s' and the Nature CNN's weight gradients on a second thread "
                "beside the online network's passes (one torch thread each; qzoo/second_thread.py): the same "
                "kernels on the same inputs, so the same numbers, in ~0.6x the wall time of an update on an idle "
                "2-core CPU; 'auto' = for the Nature CNN on a CPU with >= 2 usable cores, each training phase with "
                "or without it, whichever was faster when last timed (a busy other core makes it slower); "
                "config.yaml records the resolved value",
        one_of("auto", "true", "false"), "train")
    # --- logging, evaluation, checkpoints ---------------------------------------------------------------------
    log_interval: int = setting(1000, "environment steps between progress.csv rows", at_least(1), "logging")
    stats_window: int = setting(100, "recent episodes averaged in the logged mean return", at_least(1), "logging")
    eval_freq: int = setting(10_000, "environment steps between evaluations (0 = only at the end)", at_least(0),
                             "logging")
    eval_episodes: int = setting(10, "episodes per evaluation", at_least(1), "logging")
    eval_epsilon: float = setting(0.0, "epsilon used by evaluation", unit_interval, "logging")
    eval_envs: int = setting(
        0, "envs played side by side in a training run's evaluations, one batched forward pass per step; env i "
           "plays a fixed share of eval_episodes as a lone env seeded seed + i would (0 = auto: 8 for the Nature "
           "CNN, whose one-frame pass costs most, 1 otherwise; never more than eval_episodes)", at_least(0),
        "logging")
    checkpoint_freq: int = setting(0, "environment steps between checkpoints (0 = every 10% of training)",
                                   at_least(0), "logging")
    keep_checkpoints: int = setting(3, "periodic checkpoints kept on disk (older ones are deleted)", at_least(1),
                                    "logging")
    video_every: int = setting(0, "environment steps between videos of one evaluation episode, written to the run "
                                  "directory's videos/step_N.mp4 (0 = none)", at_least(0), "logging")
    save_replay: str = setting(
        "auto", "save the replay buffer with each checkpoint, so --resume continues exactly: 'true', 'false', or "
                "'auto' (when the buffer's filled part is at most 4 GiB and keep_checkpoints + 1 copies of it take "
                "at most half the free disk space)", one_of("auto", "true", "false"), "logging")
    schedule_timesteps: int = setting(
        0, "steps over which the epsilon, learning-rate and PER beta schedules run (0 = n_timesteps); `--resume "
           "--total-timesteps` sets it so that extending a run keeps its schedules", at_least(0), "train")
    progress_bar: bool = setting(True, "show a live progress bar", group="logging")
    tensorboard: bool = setting(True, "write TensorBoard event files", group="logging")

    # ----------------------------------------------------------------------------------------------------------
    def __post_init__(self):
        for f in dataclasses.fields(self):
            check = f.metadata["check"]
            problem = check(getattr(self, f.name)) if check else None
            if problem:
                raise ConfigError(f"setting '{f.name}' must be {problem}, got {getattr(self, f.name)!r}")
        if self.batch_size > self.buffer_size:
            raise ConfigError(f"setting 'batch_size' ({self.batch_size}) must not exceed "
                              f"'buffer_size' ({self.buffer_size})")
        if not (math.isfinite(self.v_min) and math.isfinite(self.v_max) and math.isfinite(self.v_max - self.v_min)):
            raise ConfigError(f"settings 'v_min' and 'v_max' must be finite numbers whose difference is finite, got "
                              f"{self.v_min} and {self.v_max}")
        if self.v_min >= self.v_max:
            raise ConfigError(f"setting 'v_min' ({self.v_min}) must be below 'v_max' ({self.v_max})")
        if self.exploration_final_eps > self.exploration_initial_eps:
            raise ConfigError("setting 'exploration_final_eps' must not exceed 'exploration_initial_eps' "
                              f"({self.exploration_final_eps} > {self.exploration_initial_eps})")
        if self.exploration_schedule == "exponential" and not self.is_tabular:
            raise ConfigError("setting 'exploration_schedule' 'exponential' is used by --algo qlearning only; "
                              f"{self.algo} decays epsilon linearly over exploration_fraction")

    # helpers -------------------------------------------------------------------------------------------------
    @property
    def is_tabular(self) -> bool:
        """A Q-table agent (qzoo/qtable.py, trained by qzoo/tabular.py) rather than the deep Q-learning agent."""
        return self.algo in TABULAR_ALGOS

    @property
    def schedule_horizon(self) -> int:
        """The step count the epsilon and beta schedules are laid out over."""
        return self.schedule_timesteps or self.n_timesteps

    @property
    def updates_per_phase(self) -> int:
        return self.train_freq * self.n_envs if self.gradient_steps == -1 else self.gradient_steps

    def resolved_network(self, obs_shape: tuple) -> str:
        """The torso actually built: ``network``, with 'auto' read as nature_cnn for image observations
        (channels, height, width) of at least 36x36, minatar for smaller grids (MinAtar's 10x10), and mlp
        otherwise. The one place 'auto' is resolved."""
        if self.network != "auto":
            return self.network
        if len(obs_shape) != 3:
            return "mlp"
        return "nature_cnn" if min(obs_shape[1:]) >= 36 else "minatar"

    def resolved_eval_envs(self, obs_shape: tuple, episodes: int | None = None) -> int:
        """``eval_envs``, with 0 (auto) read as 8 for the Nature CNN and 1 otherwise, capped at the episodes played
        (``eval_episodes`` unless given)."""
        n = self.eval_envs or (8 if self.resolved_network(obs_shape) == "nature_cnn" else 1)
        return max(1, min(n, self.eval_episodes if episodes is None else episodes))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> Config:
        return from_dict({**self.to_dict(), **changes})


FIELDS = {f.name: f for f in dataclasses.fields(Config)}
TRI_STATE = ("bf16", "overlap", "target_thread", "save_replay")  # 'auto', 'true' or 'false'
_BOOL_WORDS = ("true", "yes", "on", "1", "false", "no", "off", "0")
_TYPES = typing.get_type_hints(Config)


# --------------------------------------------------------------------------------------------------------------
# Coercion: YAML, CLI strings and Python values into each field's type.
# --------------------------------------------------------------------------------------------------------------
def _parse_number(text: str) -> float:
    return float(text.replace("_", ""))


def coerce(key: str, value: Any) -> Any:
    """Convert ``value`` to the type of setting ``key``; raise ConfigError with a one-line message."""
    if key not in FIELDS:
        raise ConfigError(unknown_key_message(key))
    typ = _TYPES[key]
    bad = ConfigError(f"setting '{key}' must be {_type_phrase(typ)}, got {value!r}")
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off",
                                                                    "0"):
                return value.strip().lower() in ("true", "yes", "on", "1")
            raise bad
        if typ is int:
            if isinstance(value, bool):
                raise bad
            number = _parse_number(value) if isinstance(value, str) else value
            if isinstance(number, (int, float)) and math.isfinite(number) and float(number).is_integer():
                return int(number)
            raise bad
        if typ is float:
            if isinstance(value, bool):
                raise bad
            number = _parse_number(value) if isinstance(value, str) else value
            if isinstance(number, (int, float)) and not math.isnan(number):
                return float(number)
            raise bad
        if typ is str:
            if key in TRI_STATE:  # 'auto' | 'true' | 'false', also written as a YAML or CLI boolean
                if isinstance(value, bool):
                    return str(value).lower()
                if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
                    return "true" if value.strip().lower() in _BOOL_WORDS[:4] else "false"
            if isinstance(value, str) and value:
                return value
            raise bad
        if typ is list:
            parsed = yaml.safe_load(value) if isinstance(value, str) else value
            if isinstance(parsed, (list, tuple)):
                if key in ("net_arch", "atari_crop"):
                    if all(isinstance(n, int) and not isinstance(n, bool) for n in parsed):
                        return list(parsed)
                    raise bad
                return [str(x) for x in parsed]
            raise bad
        if typ is dict:
            parsed = yaml.safe_load(value) if isinstance(value, str) else value
            if parsed is None:
                return {}
            if isinstance(parsed, dict):
                return dict(parsed)
            raise bad
    except (ValueError, TypeError, yaml.YAMLError):
        raise bad from None
    raise AssertionError(f"unhandled type {typ} for {key}")


def _type_phrase(typ) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a non-empty string",
            list: "a list such as [256, 256]", dict: "a mapping such as {key: value}"}[typ]


def unknown_key_message(key: str) -> str:
    close = difflib.get_close_matches(key, FIELDS, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown setting '{key}'{hint}; `qzoo train --help` lists every setting"


def from_dict(values: dict) -> Config:
    """Build a validated Config from a mapping of setting names to (possibly string) values."""
    return Config(**{k: coerce(k, v) for k, v in values.items()})


def default_of(f: dataclasses.Field):
    """A setting's default value (its dataclass default, or its default factory's value)."""
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def defaults() -> dict:
    """Every setting's default value, by name."""
    return {f.name: default_of(f) for f in dataclasses.fields(Config)}


def settings_help() -> str:
    """Every setting with its type, default and help text, grouped, for ``qzoo train --help``."""
    lines, group = [], None
    for f in dataclasses.fields(Config):
        if f.metadata["group"] != group:
            group = f.metadata["group"]
            lines.append(f"\n  [{group}]")
        default = default_of(f)
        lines.append(f"  {f.name:<24} {_TYPES[f.name].__name__:<5} default {default!r:<12} {f.metadata['help']}")
    note = ("--algo qlearning reads only: " + ", ".join(TABULAR_SETTINGS) + "; the deep Q-learning algos read every "
            "setting except exploration_decay_rate")
    lines.append("\n" + textwrap.fill(note, 116, initial_indent="  ", subsequent_indent="    "))
    return "\n".join(lines)
