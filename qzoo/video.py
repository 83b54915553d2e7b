"""Videos of an agent playing: MP4 (H.264, yuv420p, so browsers play it) written by imageio-ffmpeg's own
ffmpeg binary (no system ffmpeg needed).

Frames come from the environment's ``rgb_array`` rendering of the evaluation env: for Atari the emulator's
native 210x160 RGB screen (one frame per agent step, i.e. every ``frame_skip``-th emulator frame, played back at
60 / frame_skip fps = real time), for classic control and toy-text envs their own drawing. The episode number
and the return so far (for Atari: the game score) are written into the bottom-left corner of each frame.
The episodes are played by :func:`qzoo.evaluation.evaluate` itself, so the returns of a recording are the ones
``qzoo eval`` reports with the same seed and epsilon.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qzoo.config import Config, ConfigError
from qzoo.env_ids import is_atari_id
from qzoo.envs import make_eval_env, render_problem
from qzoo.evaluation import EvalResult, evaluate

VIDEO_DIR = "videos"  # periodic captures during training: <run_dir>/videos/step_<N>.mp4


@dataclass(frozen=True)
class Recording:
    path: Path
    frames: int
    width: int
    height: int
    fps: float
    result: EvalResult


def render_env(config: Config):
    """The evaluation env of ``config`` (whole games, raw rewards for Atari) with ``render_mode='rgb_array'``."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame-drawn envs: no display wanted (nor its warnings)
    try:
        return make_eval_env(config, render_mode="rgb_array")
    except Exception as e:  # an env whose class claims rgb_array and still refuses it
        said = " ".join(str(e).split()) or "(no message)"
        raise ConfigError(f"environment '{config.env_id}' cannot render video frames: {type(e).__name__}: "
                          f"{said[:300]}") from None


def frames_per_second(config: Config, env) -> float:
    if is_atari_id(config.env_id):
        return 60.0 / config.frame_skip  # one rendered frame per agent step; the emulator runs at 60 Hz
    return float(env.metadata.get("render_fps") or 30)


def caption(frame: np.ndarray, text: str) -> np.ndarray:
    """``frame`` with ``text`` in white on a black box in its bottom-left corner (a copy; same size)."""
    import cv2

    frame = np.ascontiguousarray(frame[..., :3], dtype=np.uint8).copy()
    height, width = frame.shape[:2]
    scale = max(0.3, min(width, height) / 400)
    thickness = 1 if scale < 0.8 else 2
    (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(2, int(3 * scale))
    cv2.rectangle(frame, (0, height - text_h - baseline - 2 * pad), (text_w + 2 * pad, height), (0, 0, 0), -1)
    cv2.putText(frame, text, (pad, height - baseline - pad), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                thickness, cv2.LINE_AA)
    return frame


class MP4Writer:
    """Streams RGB frames to an H.264 MP4 (yuv420p needs even sides: an odd row/column is padded by repetition)."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = Path(path), fps
        self.frames, self.size, self._gen = 0, None, None

    def write(self, frame: np.ndarray) -> None:
        import imageio_ffmpeg

        height, width = frame.shape[:2]
        if height % 2 or width % 2:
            frame = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        if self._gen is None:
            self.size = (frame.shape[1], frame.shape[0])
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._gen = imageio_ffmpeg.write_frames(
                str(self.path), self.size, fps=self.fps, codec="libx264", pix_fmt_in="rgb24", pix_fmt_out="yuv420p",
                macro_block_size=1, quality=None, ffmpeg_log_level="error",
                output_params=["-crf", "20", "-preset", "fast", "-movflags", "+faststart"])
            self._gen.send(None)
        self._gen.send(np.ascontiguousarray(frame))
        self.frames += 1

    def close(self) -> None:
        if self._gen is not None:
            self._gen.close()


def record(agent, config: Config, path: str | Path, *, episodes: int = 1, epsilon: float | None = None,
           seed: int = 0, max_steps: int = 100_000) -> Recording:
    """Play ``episodes`` evaluation episodes with ``agent`` and write them, one after the other, to ``path``."""
    if episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {episodes}")
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise ConfigError(f"video file '{path}' must end in .mp4")
    if (problem := render_problem(config.env_id)) is not None:
        raise ConfigError(problem)
    env = render_env(config)
    writer = MP4Writer(path, frames_per_second(config, env))
    word = "score" if is_atari_id(config.env_id) else "return"

    def on_step(episode: int, total: float) -> None:
        writer.write(caption(env.render(), f"episode {episode + 1}  {word} {total:g}"))

    evaluating = getattr(agent, "evaluating", contextlib.nullcontext)  # noisy nets: mean weights
    try:
        with evaluating():
            result = evaluate(agent, env, episodes, config.eval_epsilon if epsilon is None else epsilon, seed,
                              max_steps, on_step=on_step)
    finally:
        writer.close()
        env.close()
    return Recording(path, writer.frames, writer.size[0], writer.size[1], writer.fps, result)


def record_run(run_dir: str | Path, output: str | Path | None = None, *, episodes: int = 1, which: str = "final",
               epsilon: float | None = None, seed: int = 0, device: str = "cpu") -> Recording:
    """``qzoo record``: load the run's agent (or an exported one) and record it; default output
    ``<run_dir>/video.mp4``."""
    from qzoo.policy import load_policy

    agent, config, _ = load_policy(Path(run_dir), which, device)
    output = Path(run_dir) / "video.mp4" if output is None else output
    return record(agent, config, output, episodes=episodes, epsilon=epsilon, seed=seed)


def capture_training(run_dir: Path | None, config: Config, agent, step: int) -> Path | None:
    """The ``video_every`` hook of the training loops: one evaluation episode to ``videos/step_<step>.mp4``."""
    if run_dir is None:
        return None
    path = Path(run_dir) / VIDEO_DIR / f"step_{step}.mp4"
    return record(agent, config, path, episodes=1, seed=config.seed + 20_000).path
