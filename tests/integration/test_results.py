"""Looking at results: plot, record, report, export -> eval, on real (tiny) runs."""

import csv
import json
import shutil
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from qzoo import checkpoint as ckpt
from qzoo.cli import main
from qzoo.envs import make_env
from qzoo.evaluation import evaluate
from qzoo.policy import load_policy
from qzoo.resolve import resolve
from qzoo.tabular import train_tabular
from qzoo.trainer import train

FAST = ["progress_bar=false", "tensorboard=false", "learning_starts=300", "log_interval=250", "eval_freq=500",
        "eval_episodes=2", "train_freq=4", "gradient_steps=2", "target_update_interval=100", "net_arch=[32]"]


@pytest.fixture(scope="module")
def cartpole_runs(tmp_path_factory):
    """Two seeds of a 1500-step CartPole run; seed 0 also captures a video every 1000 steps."""
    root = tmp_path_factory.mktemp("runs")
    dirs = []
    for seed in (0, 1):
        config = resolve("CartPole-v1", flags={"n_timesteps": 1500, "seed": seed},
                         sets=FAST + [f"video_every={1000 if seed == 0 else 0}"])
        dirs.append(root / "CartPole-v1" / f"dqn_s{seed}")
        train(config, dirs[-1], command=f"qzoo train CartPole-v1 -n 1500 --seed {seed}", out=None)
    return dirs


@pytest.fixture(scope="module")
def frozenlake_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tab") / "qlearning_s0"
    config = resolve("FrozenLake-v1", "qlearning", flags={"n_timesteps": 20000, "seed": 1},
                     sets=["progress_bar=false", "tensorboard=false", "eval_freq=10000", "eval_episodes=5",
                           "env_kwargs={is_slippery: false}", "exploration_decay_rate=0.002"])
    train_tabular(config, run_dir, command="qzoo train FrozenLake-v1 --algo qlearning", out=None)
    return run_dir


def read_mp4(path):
    """(frames, (width, height)) decoded by ffmpeg."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader]
    return frames, (width, height)


def eval_column(run_dir, column="return_mean"):
    return [float(r[column]) for r in csv.DictReader(open(run_dir / "evaluations.csv"))]


# ---- plot ------------------------------------------------------------------------------------------------------
def test_plot_writes_a_png_of_the_mean_of_the_seeds_in_the_csvs(cartpole_runs, tmp_path, capsys):
    from qzoo.plotting import curves, find_runs, plot_curves

    out = tmp_path / "curves.png"
    assert main(["plot", str(cartpole_runs[0].parent), "-o", str(out)]) == 0
    with Image.open(out) as img:
        img.load()
        assert img.format == "PNG" and img.size == (800, 500)
    assert "dqn: 2 run(s)" in capsys.readouterr().out

    # what is drawn is the per-step mean of the two runs' evaluations.csv
    runs = find_runs([str(cartpole_runs[0].parent)])
    fig = plot_curves(curves(runs, "eval", n_boot=500), ylabel="evaluation return")
    line = fig.axes[0].lines[0]
    steps = [float(r["step"]) for r in csv.DictReader(open(cartpole_runs[0] / "evaluations.csv"))]
    expected = (np.array(eval_column(cartpole_runs[0])) + np.array(eval_column(cartpole_runs[1]))) / 2
    np.testing.assert_allclose(line.get_xdata(), steps)
    np.testing.assert_allclose(line.get_ydata(), expected)
    assert [ln.get_ydata()[0] for ln in fig.axes[0].lines[1:]] == [500.0]  # RL Zoo's CartPole reference line
    band = fig.axes[0].collections[0].get_paths()[0].vertices[:, 1]
    lo = np.minimum(eval_column(cartpole_runs[0]), eval_column(cartpole_runs[1]))
    hi = np.maximum(eval_column(cartpole_runs[0]), eval_column(cartpole_runs[1]))
    assert band.min() >= lo.min() - 1e-9 and band.max() <= hi.max() + 1e-9  # the CI lies between the seeds

    svg = tmp_path / "loss.svg"
    assert main(["plot", f"mine={cartpole_runs[0]}", "--metric", "loss", "--smooth", "3", "-o", str(svg)]) == 0
    assert svg.read_text().lstrip().startswith("<?xml") and "mine (1 run)" in svg.read_text()


def test_plot_bad_input_is_one_line(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["plot", str(tmp_path), "-o", str(tmp_path / "x.png")]) == 2
    assert "no qzoo run directories" in capsys.readouterr().err



def _atari_run(run_dir, env_id, algo, seed, evaluations):
    """A run directory as qzoo writes it (config.yaml, progress.csv, evaluations.csv) with the given (step, score)
    evaluations, for plotting without training."""
    config = resolve(env_id, algo, flags={"n_timesteps": 100_000, "seed": seed})
    run_dir.mkdir(parents=True)
    ckpt.write_config(run_dir, config)
    (run_dir / "progress.csv").write_text("step,episodes,return_mean\n1000,1,-21\n")
    rows = "".join(f"{step},{score},0,100,100,1\n" for step, score in evaluations)
    (run_dir / "evaluations.csv").write_text("step,return_mean,return_std,length_mean,episodes,time_s\n" + rows)


def test_plot_final_draws_the_final_scores_of_finished_atari_runs(tmp_path, capsys):
    runs = tmp_path / "runs"
    _atari_run(runs / "pong0", "ALE/Pong-v5", "der", 0, [(100_000, -13.64)])
    _atari_run(runs / "pong1", "ALE/Pong-v5", "der", 1, [(50_000, -20.0), (100_000, -6.58)])
    _atari_run(runs / "breakout0", "ALE/Breakout-v5", "der", 0, [(100_000, 16.1)])
    _atari_run(runs / "cut", "ALE/Breakout-v5", "der", 1, [(50_000, 3.0)])  # interrupted before its end
    out = tmp_path / "scores.png"
    assert main(["plot", str(runs), "--final", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    # Pong: (score + 20.7) / 35.3; Breakout: (score - 1.7) / 28.8
    assert "ALE/Pong-v5  der: 2 run(s) at 100,000 steps: -13.6, -6.6 (human-normalised 0.200, 0.400)" in printed
    assert "ALE/Breakout-v5  der: 1 run(s) at 100,000 steps: 16.1 (human-normalised 0.500)" in printed
    # IQM over 2 games x 1 run (the first seed of each): 0.2 and 0.5 -> 0.35, and no interval (a game's one run is
    # all its stratum resamples); DER's published Pong -19.3 and Breakout 1.9 -> 0.0397 and 0.0069, IQM 0.023
    assert "IQM der over 2 game(s) x 1 run(s): 0.350 (no CI: one run per game); der published 0.023" in printed
    assert f"left out (no final evaluation yet): {runs / 'cut'}" in printed
    with Image.open(out) as img:
        img.load()
        assert img.format == "PNG"


def test_plot_final_bad_input_is_one_line_and_writes_nothing(cartpole_runs, tmp_path, capsys):
    out = tmp_path / "scores.png"
    assert main(["plot", str(cartpole_runs[0]), "--final", "-o", str(out)]) == 2
    assert "CartPole-v1 has no published human and random scores" in capsys.readouterr().err
    _atari_run(tmp_path / "cut", "ALE/Pong-v5", "dqn", 0, [(50_000, -20.0)])
    assert main(["plot", str(tmp_path / "cut"), "--final", "-o", str(out)]) == 2
    assert "none of the 1 run(s) found has its final evaluation yet" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "cut"), "--final", "--metric", "loss", "-o", str(out)]) == 2
    assert "--metric cannot go with --final" in capsys.readouterr().err
    assert not out.exists()

# ---- record ----------------------------------------------------------------------------------------------------
def test_record_cartpole_frames_match_the_episodes_played(cartpole_runs, tmp_path, capsys):
    out = tmp_path / "cartpole.mp4"
    assert main(["record", str(cartpole_runs[0]), "--episodes", "2", "--seed", "3", "-o", str(out)]) == 0
    agent, config, _ = load_policy(cartpole_runs[0])
    env = make_env(config.env_id, config.env_kwargs, config=config)()
    played = evaluate(agent, env, 2, 0.0, 3)  # what qzoo eval plays with the same seed
    frames, size = read_mp4(out)
    assert size == (600, 400)
    assert len(frames) == int(played.lengths.sum()) + 2  # one frame per step plus each episode's first
    assert f"returns {played.returns[0]:g}, {played.returns[1]:g}" in capsys.readouterr().out
    assert frames[0].std() > 0  # a picture, not a blank frame


def test_video_every_captures_during_training(cartpole_runs):
    frames, size = read_mp4(cartpole_runs[0] / "videos" / "step_1000.mp4")
    assert size == (600, 400) and len(frames) >= 2
    assert not (cartpole_runs[1] / "videos").exists()  # video_every 0: none


def test_record_atari_at_native_resolution(tmp_path):
    from qzoo.agent import build_agent, resolve_device
    from qzoo.envs import check_env
    from qzoo.video import record_run

    # a randomly initialised Nature-CNN agent; games capped at 400 emulator frames (100 agent steps)
    config = resolve("ALE/Pong-v5", flags={"seed": 0}, sets=["max_episode_frames=400", "eval_epsilon=0.05"])
    info = check_env(config)
    agent = build_agent(config, info.observation_space, info.n_actions, resolve_device("cpu"))
    run_dir = tmp_path / "pong"
    run_dir.mkdir()
    ckpt.write_config(run_dir, config)
    ckpt.save(run_dir / ckpt.MODEL_FILE, ckpt.model_payload(config, agent, 0, info.observation_space.shape))

    rec = record_run(run_dir, seed=5)
    frames, size = read_mp4(run_dir / "video.mp4")
    assert size == (160, 210) and (rec.width, rec.height) == (160, 210)  # the emulator's own screen
    assert len(frames) == rec.frames == int(rec.result.lengths[0]) + 1 and 50 <= len(frames) <= 101
    assert rec.fps == 15.0  # 60 Hz / frame_skip 4: real time
    assert frames[-1].std() > 10  # the game's colours, not a blank screen


def test_record_tabular_frozenlake(frozenlake_run, tmp_path):
    from qzoo.video import record_run

    rec = record_run(frozenlake_run, tmp_path / "lake.mp4", episodes=2)
    frames, size = read_mp4(tmp_path / "lake.mp4")
    assert size == (256, 256) and len(frames) == int(rec.result.lengths.sum()) + 2
    assert rec.result.returns.tolist() == [1.0, 1.0]  # the non-slippery lake is solved


def test_record_rejects_other_formats(cartpole_runs, tmp_path, capsys):
    assert main(["record", str(cartpole_runs[0]), "-o", str(tmp_path / "v.gif")]) == 2
    assert "must end in .mp4" in capsys.readouterr().err


# ---- report in a real browser ------------------------------------------------------------------------------------
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# test-only: after load, write where the curve image sits into the DOM (--dump-dom reads it back)
PROBE = """<script>window.addEventListener('load', () => { const r = document.getElementById('curve-eval')
  .getBoundingClientRect(); document.body.dataset.curve = [r.left, r.top, r.width, r.height].join(','); });
</script></body>"""


def chromium(tmp_path, *args):
    exe = shutil.which("chromium")
    assert exe, "chromium is not installed: run `bash scripts/setup.sh --dev` (it installs Debian's chromium)"
    return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120)


def test_report_shows_curve_table_and_a_playable_video(cartpole_runs, tmp_path, capsys):
    import re

    run_dir = tmp_path / "run"
    shutil.copytree(cartpole_runs[0], run_dir)
    assert main(["report", str(run_dir)]) == 0
    page = (run_dir / "report.html").read_text()
    assert (run_dir / "video.mp4").is_file()  # recorded because there was none
    assert "src=\"http" not in page and "src='http" not in page  # self-contained: opens offline
    assert "qzoo train CartPole-v1 -n 1500 --seed 0" in page
    assert page.count("<tr><td class=num>") == len(eval_column(run_dir))  # one table row per evaluation
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE))

    dom = chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()).stdout
    status = dict(re.findall(r'data-([a-z0-9-]+)="([^"]*)"', re.search(r"<p id=\"video-status\"[^>]*>", dom)[0]))
    assert status["ready-state"] in ("3", "4"), status  # HAVE_FUTURE_DATA / HAVE_ENOUGH_DATA: it can play
    frames, _ = read_mp4(run_dir / "video.mp4")
    assert float(status["duration"]) == pytest.approx(len(frames) / 50, abs=0.05)  # CartPole renders at 50 fps
    assert status["can-play"] in ("maybe", "probably") and "error" not in status
    assert status["width"] == "600" and status["height"] == "400"
    left, top, width, height = (round(float(x)) for x in re.search(r'data-curve="([^"]+)"', dom)[1].split(","))
    assert width > 300 and height > 150

    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", probe.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (2000, 1280)
    curve = pixels[top:top + height, left:left + width]
    blue = (np.abs(curve - [31, 119, 180]).sum(axis=2) < 60).sum()  # matplotlib's C0, the mean curve
    assert blue > 100, "the learning curve is not visible where its image sits"
    assert (curve.sum(axis=2) < 600).mean() > 0.02  # axes, ticks and text: not a blank area
    table_text = re.sub(r"<[^>]+>", " ", dom)
    assert "human-normalised" not in table_text.split("Video")[0]  # not an Atari game: no normalised column


# ---- export -> eval ----------------------------------------------------------------------------------------------
def test_export_then_eval_gives_identical_returns(cartpole_runs, tmp_path, capsys):
    from safetensors import safe_open

    from qzoo.export import read_card_metadata

    out = tmp_path / "hub"
    assert main(["export", str(cartpole_runs[0]), str(out), "--episodes", "3", "--seed", "7"]) == 0
    assert {p.name for p in out.iterdir()} == {"README.md", "config.yaml", "model.safetensors", "results.json",
                                               "replay.mp4"}
    capsys.readouterr()
    assert main(["eval", str(out), "--episodes", "3", "--seed", "7"]) == 0
    exported = capsys.readouterr().out.splitlines()[1]
    assert main(["eval", str(cartpole_runs[0]), "--episodes", "3", "--seed", "7"]) == 0
    original = capsys.readouterr().out.splitlines()[1]
    assert exported == original and exported.startswith("return ")

    results = json.loads((out / "results.json").read_text())
    assert results["evaluation"]["episodes"] == 3 and results["trained_steps"] == 1500
    assert f"{results['evaluation']['mean_return']:.2f}" in exported
    card = read_card_metadata(out)
    assert card["library_name"] == "qzoo" and "CartPole-v1" in card["tags"]
    metric = card["model-index"][0]["results"][0]["metrics"][0]
    assert metric["type"] == "mean_reward" and metric["value"].startswith(f"{results['evaluation']['mean_return']:.2f}")
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert f.metadata()["env_id"] == "CartPole-v1" and f.metadata()["n_actions"] == "2"
    frames, size = read_mp4(out / "replay.mp4")
    assert size == (600, 400) and len(frames) > 1

    assert main(["export", str(cartpole_runs[0]), str(out)]) == 2  # never overwrites
    assert "not empty" in capsys.readouterr().err


def test_export_tabular_round_trip(frozenlake_run, tmp_path, capsys):
    out = tmp_path / "lake"
    assert main(["export", str(frozenlake_run), str(out), "--no-video"]) == 0
    assert not (out / "replay.mp4").exists()
    original, _, _ = load_policy(frozenlake_run)
    exported, config, path = load_policy(out)
    assert path.name == "model.safetensors" and config.is_tabular
    np.testing.assert_array_equal(exported.values, original.values)
