"""Checks where qzoo meets the outside world: the machine's devices and memory, the file system, and the files and
flags a user hands over. Each raises :class:`qzoo.config.ConfigError` (one line; the CLI exits 2) before anything
is created. Checks of a setting's own value live with the setting in :mod:`qzoo.config`; checks of the env's
answer to the user's env_kwargs live in :func:`qzoo.envs.check_env`, which calls :func:`check_training` here.

Two gates call these:
- :func:`check_args`, once per command in ``qzoo.cli.main``: the command line's devices, seeds, epsilon, output
  folders and input files;
- :func:`check_training`, from ``check_env(config, training=True)``, which every command that trains passes (train,
  train --resume, tune, bench, and the training loops themselves): the config's device and its memory estimate.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path

from qzoo.config import ConfigError

SEED_MAX = 2**32 - 1  # numpy's legacy seeding (np.random.seed, RandomState) takes [0, 2**32 - 1]
SYSTEM_DIRS = ("/proc", "/sys", "/dev")  # kernel file systems: never a place for run files


# ---- devices ---------------------------------------------------------------------------------------------------
def device_problem(name: str) -> str | None:
    """None when torch can use device ``name`` on this machine, or a phrase saying why not and what is allowed."""
    if name in ("auto", "cpu"):
        return None
    if name != "cuda" and not (name.startswith("cuda:") and name[5:].isdigit()):
        return "not a device; allowed: 'auto', 'cpu', 'cuda' or 'cuda:N'"
    import torch

    if not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        return f"{why}; use 'cpu' (or 'auto')"
    count, index = torch.cuda.device_count(), int(name[5:] or 0) if ":" in name else 0
    if index >= count:
        return f"this machine has {count} CUDA device(s): cuda:0 to cuda:{count - 1}"
    return None


def check_device(name: str, what: str) -> None:
    if (problem := device_problem(name)) is not None:
        raise ConfigError(f"{what} {name!r}: {problem}")


# ---- memory ----------------------------------------------------------------------------------------------------
def _gib(n: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 2**10:.0f} KiB"


def memory_available() -> tuple[int, int]:
    """(bytes a new process can use now, bytes it could ever allocate): MemAvailable + free swap, and MemTotal +
    total swap, from /proc/meminfo (the page counts of sysconf where there is none)."""
    try:
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in open("/proc/meminfo")}
        return (info["MemAvailable"] + info.get("SwapFree", 0), info["MemTotal"] + info.get("SwapTotal", 0))
    except (OSError, KeyError, ValueError, IndexError):
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page


def replay_bytes_per_row(config, observation_space) -> int:
    """Bytes of one replay row: as allocated by qzoo.replay (FrameStorage for stacked Atari frames, each frame once;
    TransitionStorage otherwise, s and s' both), plus the sum tree of prioritized replay."""
    from qzoo.replay import uses_frame_storage

    shape, itemsize = observation_space.shape, observation_space.dtype.itemsize
    if uses_frame_storage(config, observation_space):
        row = math.prod(shape[1:]) * itemsize + 4 + 8 + 1 + 1  # frame, action, reward, flags, valid
    else:
        row = 2 * math.prod(shape) * itemsize + 8 + 4 + 4  # obs_tm1, obs_t, action, reward, discount
    return row + (32 if config.prioritized else 0)  # sum tree: 2 x (next power of two) float64


def network_bytes(config, observation_space, n_actions: int) -> int:
    """Bytes of the Q-network's parameters times five (online, target, gradient, Adam's two moments), counted from
    the layer sizes qzoo.networks builds: the MLP of net_arch, or the Nature / MinAtar CNN's fully connected layer
    over its convolutions' output (the convolutions themselves are small: a few hundred KiB at most). Noisy layers
    hold two of each weight."""
    outputs = n_actions * (config.n_atoms if config.distributional == "c51" else 1) + (1 if config.dueling else 0)
    shape = observation_space.shape
    network = config.resolved_network(shape)
    if network == "nature_cnn":  # conv 8x8/4, 4x4/2, 3x3/1: 64 channels of 7x7 for 84x84 (11x11 padded "same")
        side = ([math.ceil(math.ceil(n / 4) / 2) for n in shape[1:]] if config.conv_padding == "same"
                else [((n - 8) // 4 + 1 - 4) // 2 + 1 - 2 for n in shape[1:]])
        sizes = [64 * side[0] * side[1], 512, outputs]
    elif network == "minatar":  # conv 3x3/1: 16 channels
        sizes = [16 * (shape[1] - 2) * (shape[2] - 2), 128, outputs]
    else:
        sizes = [math.prod(shape), *config.net_arch, outputs]
    params = sum((a + 1) * b for a, b in zip(sizes, sizes[1:], strict=False))
    return params * 4 * 5 * (2 if config.noisy else 1)


def check_memory(config, observation_space, n_actions: int) -> None:
    """Refuse a run whose replay buffer and network cannot fit: the whole buffer is allocated at the start (so it
    must fit in memory + swap), and the part a run fills, min(buffer_size, n_timesteps) rows, is touched (so it
    must fit in what is available now)."""
    row = replay_bytes_per_row(config, observation_space)
    net = network_bytes(config, observation_space, n_actions)
    allocated = config.buffer_size * row + net
    touched = min(config.buffer_size, config.n_timesteps + config.n_envs) * row + net
    now, total = memory_available()
    culprit = "'net_arch' " + str(config.net_arch) if net > config.buffer_size * row else \
        f"'buffer_size' {config.buffer_size}"
    if allocated > total:
        raise ConfigError(f"setting {culprit} needs about {_gib(allocated)} of memory (replay {_gib(allocated - net)}"
                          f", network {_gib(net)}); this machine has {_gib(total)} in all (memory + swap)")
    if touched > now:
        raise ConfigError(f"setting {culprit} needs about {_gib(touched)} of memory for {config.n_timesteps} steps "
                          f"(replay {_gib(touched - net)}, network {_gib(net)}); {_gib(now)} is available now")


def check_training(config, observation_space, n_actions: int) -> None:
    """Can this machine train ``config``: its device is there, its buffer and network fit in memory."""
    check_device(config.device, "setting 'device'")
    check_memory(config, observation_space, n_actions)


# ---- paths -----------------------------------------------------------------------------------------------------
def check_output_dir(path: str | Path, what: str) -> None:
    """A folder qzoo will create (or write into): not a file, not under /proc, /sys or /dev, and its nearest
    existing ancestor a folder this process may write to. Creates nothing."""
    path = Path(path)
    absolute = Path(os.path.abspath(path))
    if any(absolute == Path(d) or Path(d) in absolute.parents for d in SYSTEM_DIRS):
        raise ConfigError(f"{what} {str(path)!r} is under {absolute.parts[0]}{absolute.parts[1]}, a kernel file "
                          "system; choose a folder on disk")
    existing = absolute
    while not existing.exists():
        if existing.is_symlink():
            raise ConfigError(f"{what} {str(path)!r}: {str(existing)!r} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == absolute else f" ({str(existing)!r} is a file)"
        raise ConfigError(f"{what} {str(path)!r} is not a folder{where}; give a folder path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {str(path)!r} cannot be written: no write permission on {str(existing)!r}")


def check_output_file(path: str | Path, what: str) -> None:
    """A file qzoo will write: not a folder, and its folder writable (:func:`check_output_dir`)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {str(path)!r} is a folder; give a file name")
    check_output_dir(path.parent if str(path.parent) else Path("."), what + " folder")


def check_video_file(path: str | Path, what: str = "--video") -> None:
    """An existing MP4 file (ISO base media: an 'ftyp' box first), as the report embeds it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} " + ("is a folder" if path.is_dir() else "does not exist")
                          + "; give an .mp4 file")
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError as e:
        raise ConfigError(f"{what} {str(path)!r} cannot be read ({e.strerror})") from None
    if head[4:8] != b"ftyp":
        raise ConfigError(f"{what} {str(path)!r} is not an MP4 video (no 'ftyp' header); give an .mp4 file, e.g. one "
                          "written by qzoo record")


# ---- the command line ------------------------------------------------------------------------------------------
def check_seed(value: int | None, what: str, count: int = 1) -> None:
    """``value`` .. ``value + count - 1`` are all seeds numpy takes."""
    if value is not None and not 0 <= value <= SEED_MAX - (count - 1):
        top = f"{SEED_MAX} - {count - 1}" if count > 1 else str(SEED_MAX)
        raise ConfigError(f"{what} must be an integer in [0, {top}]" + (f" ({count} seeds from it)" if count > 1
                                                                         else "") + f", got {value}")


MAX_BENCH_SEEDS = 100_000  # more seeds than any suite runs: a typo, refused before a plan of that size is built


def seed_list(text: str) -> list[int]:
    """``qzoo bench --seeds``: ``N`` (seeds 0..N-1), ``A-B`` (A..B) or a comma list (``1,3``; one seed: ``1,``), so
    one suite's seeds can be split between machines or sessions. Raises ``argparse.ArgumentTypeError`` (one line)."""
    allowed = "N (seeds 0..N-1), A-B (seeds A..B) or a comma list such as 1,3 (one seed: 1,)"
    t = text.strip()
    if re.fullmatch(r"[+-]?\d+", t):
        seeds = range(int(t))
    elif m := re.fullmatch(r"(\d+)\s*-\s*(\d+)", t):
        seeds = range(int(m[1]), int(m[2]) + 1)
    elif "," in t and all(re.fullmatch(r"[+-]?\d+", s.strip()) for s in t.split(",") if s.strip()):
        seeds = [int(s) for s in t.split(",") if s.strip()]
    else:
        raise argparse.ArgumentTypeError(f"{text!r} is not {allowed}")
    if not seeds:
        raise argparse.ArgumentTypeError(f"{text!r} names no seed; give {allowed}")
    if len(seeds) > MAX_BENCH_SEEDS:
        raise argparse.ArgumentTypeError(f"{text!r} names {len(seeds)} seeds; at most {MAX_BENCH_SEEDS}")
    if min(seeds) < 0 or max(seeds) > SEED_MAX:
        raise argparse.ArgumentTypeError(f"{text!r}: every seed must be in [0, {SEED_MAX}]")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r} names a seed twice")
    return list(seeds)


def check_args(args) -> None:
    """The outside-world parts of a parsed command line, checked once before the command runs."""
    get = lambda name: getattr(args, name, None)  # noqa: E731 - flags differ between commands
    if get("device"):
        check_device(args.device, "--device")
    if args.command == "tune":
        check_seed(args.seed, "--seed", max(args.seeds, 1))
        check_seed(args.sampler_seed, "--sampler-seed", max(args.workers, 1))
    else:  # (bench's --seeds is checked as it is parsed: seed_list)
        check_seed(get("seed"), "--seed")
    if get("episodes") is not None and args.episodes < 1:  # eval, record, export
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    if get("epsilon") is not None and not 0.0 <= args.epsilon <= 1.0:
        raise ConfigError(f"--epsilon must be in [0, 1], got {args.epsilon}")
    for flag in ("runs_dir", "tunes_dir", "bench_dir", "out_dir"):
        if get(flag) is not None:
            check_output_dir(get(flag), ("OUT_DIR" if flag == "out_dir" else "--" + flag.replace("_", "-")))
    if get("output") is not None:
        check_output_file(args.output, "--output")
    if get("video") is not None:
        check_video_file(args.video)
