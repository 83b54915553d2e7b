"""`qzoo bench atari100k` with both of its presets (DER, DrQ(eps)) on a real ALE game, end to end, and a run cut
after a checkpoint continuing exactly: what the suite's hours-long runs, spread over several sessions, rely on."""

import csv
import json
import os
import shutil
import subprocess
import sys

import torch
import yaml
from PIL import Image

QZOO = [sys.executable, "-m", "qzoo"]
# the suite's settings, made tiny: 240 agent steps, 120 updates each (one per step), 100-step games
TINY = ["--set", "n_timesteps=240", "--set", "learning_starts=120", "--set", "buffer_size=1000",
        "--set", "eval_episodes=1", "--set", "max_episode_frames=400", "--set", "checkpoint_freq=200",
        "--set", "log_interval=40", "--set", "tensorboard=false", "--set", "torch_threads=1"]


def run(args):
    return subprocess.run(QZOO + args, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})


def test_the_atari100k_presets_run_in_the_bench_and_continue_exactly_after_a_cut(tmp_path):
    args = ["bench", "atari100k", "--algos", "der,drq_eps", "--envs", "ALE/Pong-v5", "--seeds", "1", "--jobs", "1",
            *TINY]
    r = run([*args, "--bench-dir", str(tmp_path / "straight")])
    assert r.returncode == 0, r.stderr
    suite = tmp_path / "straight" / "atari100k"
    runs = {algo: suite / "ALE" / "Pong-v5" / f"{algo}_s0" for algo in ("der", "drq_eps")}
    config = {algo: yaml.safe_load((d / "config.yaml").read_text()) for algo, d in runs.items()}
    # the presets as the papers / Dopamine's gin files set them (qzoo/presets/der.yml, drq_eps.yml), on Dopamine's
    # network and protocol, with the tiny budget on top
    der, drq = config["der"], config["drq_eps"]
    assert (der["noisy"], der["distributional"], der["prioritized"], der["double"], der["dueling"]) == (
        True, "c51", True, True, True)
    assert (der["n_step"], der["target_update_interval"], der["train_freq"], der["conv_padding"]) == (
        10, 2000, 1, "same")
    assert (drq["augmentation"], drq["n_step"], drq["target_update_interval"], drq["noisy"], drq["prioritized"]) == (
        "shift_intensity", 10, 1, False, False)
    assert {d["n_timesteps"] for d in config.values()} == {240} and {d["eval_epsilon"] for d in config.values()} == {
        0.001}
    for d in runs.values():
        result = json.loads((d / "result.json").read_text())
        assert result["status"] == "finished" and result["steps_run"] == 240
        rows = list(csv.DictReader(open(d / "progress.csv")))
        assert [int(row["step"]) for row in rows] == [40, 80, 120, 160, 200, 240]
        assert int(rows[-1]["updates"]) == 120  # one update per step after learning_starts
    table = (suite / "results.md").read_text()
    assert "| ALE/Pong-v5 | der | 240 |" in table and "| ALE/Pong-v5 | drq_eps | 240 |" in table
    assert "DER (van Hasselt et al. 2019)" in table and "DrQ(eps) (Agarwal et al. 2021)" in table
    with Image.open(suite / "scores.png") as image:  # final scores beside the anchors (tests/unit/test_bench_figures)
        assert image.format == "PNG"

    # what a machine stopping after the checkpoint at step 200 leaves: no result.json, no models, logs beyond it
    shutil.copytree(tmp_path / "straight", tmp_path / "stopped")
    stopped = {algo: tmp_path / "stopped" / d.relative_to(tmp_path / "straight") for algo, d in runs.items()}
    for d in stopped.values():
        for path in [d / "result.json", d / "model.pt", d / "best_model.pt", *(d / "checkpoints").glob("step_240.*")]:
            path.unlink()
        assert (d / "checkpoints" / "step_200.replay.npz").is_file()  # the replay (and PER's priorities) kept
    r = run([*args, "--bench-dir", str(tmp_path / "stopped")])
    assert r.returncode == 0, r.stderr
    assert "(2 run, 0 already finished)" in r.stdout and r.stderr.count("(continued from step 200)") == 2

    timing = ("steps_per_s", "time_s")

    def rows(d, name):
        return [{k: v for k, v in row.items() if k not in timing} for row in csv.DictReader(open(d / name))]
    for algo, d in stopped.items():
        straight = runs[algo]
        assert rows(d, "progress.csv") == rows(straight, "progress.csv"), algo
        assert rows(d, "evaluations.csv") == rows(straight, "evaluations.csv"), algo
        a, b = (torch.load(x / "model.pt", weights_only=True)["q_net"] for x in (straight, d))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), algo
        result = json.loads((d / "result.json").read_text())
        assert result["resumed_from"] == 200 and result["steps_run"] == 40
        assert result["final_eval"] == json.loads((straight / "result.json").read_text())["final_eval"]
