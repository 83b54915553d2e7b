"""Benchmark tables from hand-written results (qzoo/bench/tables.py), and suite files (qzoo/bench)."""

import csv
import json
import math

import pytest
import torch

from qzoo import checkpoint as ckpt
from qzoo.bench import Job, Suite, finished_result, load_suites, plan, suite_order
from qzoo.bench.tables import mean_std, summarize, write_tables
from qzoo.config import ConfigError

ANCHORS = {"MinAtar/Breakout-v1": {"dqn": {"score": 10, "source": "paper"}},
           "CartPole-v1": {"threshold": 475, "dqn": {"score": 500.0, "source": "RL Zoo"}}}


def result(env, algo, seed, final, steps_per_s, train=None):
    return {"env": env, "algo": algo, "seed": seed, "n_timesteps": 1000, "final_eval": final, "final_eval_std": 0.0,
            "best_eval": None, "train_return": train, "steps_per_s": steps_per_s, "seconds": 10.0, "run_dir": "x"}


RESULTS = [
    result("MinAtar/Breakout-v1", "dqn", 2, 4.0, 500.0, train=3.0),  # out of seed order on purpose
    result("MinAtar/Breakout-v1", "dqn", 0, 1.0, 300.0, train=1.0),
    result("MinAtar/Breakout-v1", "dqn", 1, 2.0, 400.0, train=2.0),
    result("MinAtar/Breakout-v1", "sb3-dqn", 0, 2.0, 100.0, train=2.5),
    result("MinAtar/Breakout-v1", "sb3-dqn", 1, 4.0, 100.0, train=None),
    result("CartPole-v1", "dqn", 0, 500.0, 800.0),
    result("CartPole-v1", "dqn", 1, 474.9, 600.0),
    result("CartPole-v1", "rainbow", 0, 480.0, 200.0),
]


def test_mean_and_sample_std():
    assert mean_std([1.0, 2.0, 4.0]) == pytest.approx((7 / 3, math.sqrt((16 / 9 + 1 / 9 + 25 / 9) / 2)))
    assert mean_std([5.0]) == (5.0, 0.0)


def test_summary_rows_per_env_and_algo():
    rows = {(r["env"], r["algo"]): r for r in summarize(RESULTS, ANCHORS)}
    b = rows["MinAtar/Breakout-v1", "dqn"]
    assert b["seeds"] == [0, 1, 2] and b["finals"] == [1.0, 2.0, 4.0]
    assert b["mean"] == pytest.approx(7 / 3) and b["std"] == pytest.approx(1.527525, abs=1e-6)
    assert b["train_return"] == 2.0 and b["steps_per_s"] == 400.0
    assert b["anchor"] == {"score": 10, "source": "paper"} and b["threshold"] is None and b["solved"] is None
    peer = rows["MinAtar/Breakout-v1", "sb3-dqn"]
    assert (peer["mean"], peer["std"], peer["train_return"]) == (3.0, pytest.approx(math.sqrt(2)), 2.5)
    assert peer["anchor"]["score"] == 10  # the peer is DQN: DQN's anchor
    c = rows["CartPole-v1", "dqn"]
    assert c["solved"] == 1 and c["threshold"] == 475 and c["mean"] == pytest.approx(487.45)
    assert rows["CartPole-v1", "rainbow"]["anchor"] is None


def test_written_tables(tmp_path):
    write_tables(tmp_path, RESULTS, ANCHORS, "a test suite")
    per_run = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert len(per_run) == 8
    assert [(r["env"], r["algo"], r["seed"]) for r in per_run[:2]] == [("CartPole-v1", "dqn", "0"),
                                                                        ("CartPole-v1", "dqn", "1")]
    summary = {(r["env"], r["algo"]): r for r in csv.DictReader(open(tmp_path / "summary.csv"))}
    row = summary["MinAtar/Breakout-v1", "dqn"]
    assert (row["seeds"], float(row["mean"]), float(row["std"]), row["anchor"], row["anchor_source"]) == \
        ("3", pytest.approx(7 / 3), pytest.approx(1.527525, abs=1e-6), "10", "paper")
    md = (tmp_path / "results.md").read_text()
    assert md.startswith("a test suite\n")
    assert "| MinAtar/Breakout-v1 | dqn | 1,000 | 1.0, 2.0, 4.0 | 2.3 ± 1.5 | 2.0 | 400 | 10 (paper) |  |" in md
    assert "| CartPole-v1 | dqn | 1,000 | 500.0, 474.9 | 487.4 ± 17.7 |  | 700 | 500 (RL Zoo) | 1/2 (≥ 475) |" in md
    # speed beside the peer: qzoo 400 steps/s vs sb3 100 -> 4x; CartPole has no peer run
    assert "| MinAtar/Breakout-v1 | 2.3 ± 1.5 | 3.0 ± 1.4 | 400 | 100 | 4.00× |" in md
    assert md.count("×") == 1


def test_tables_follow_the_suites_env_order_whatever_order_the_invocations_finished_runs_in(tmp_path):
    suite = Suite("s", "", {}, {"MinAtar/Breakout-v1": {}, "CartPole-v1": {}})
    # one invocation ran CartPole, the next Breakout: both orders of the same runs give the same files
    texts = []
    for results in (RESULTS, RESULTS[::-1], RESULTS[5:] + RESULTS[:5]):
        write_tables(tmp_path, suite_order(suite, results), ANCHORS)
        texts.append([(tmp_path / f).read_text() for f in ("results.md", "summary.csv", "results.csv")])
    assert texts[0] == texts[1] == texts[2]
    rows = [(r["env"], r["algo"]) for r in csv.DictReader(open(tmp_path / "summary.csv"))]
    assert rows == [("MinAtar/Breakout-v1", "dqn"), ("MinAtar/Breakout-v1", "sb3-dqn"), ("CartPole-v1", "dqn"),
                    ("CartPole-v1", "rainbow")]
    # a run of an env the suite no longer lists goes last, not lost
    extra = result("Acrobot-v1", "dqn", 0, -80.0, 100.0)
    assert suite_order(suite, [extra] + RESULTS)[-1] is extra


def test_suite_file_adds_and_replaces_suites(tmp_path):
    path = tmp_path / "suites.yml"
    path.write_text("classic:\n  envs: [CartPole-v1]\nmine:\n  settings: {n_timesteps: 100}\n"
                    "  envs: {qzoo/Corridor-v0: {gamma: 0.5}}\n")
    suites = load_suites(path)
    assert list(suites["classic"].envs) == ["CartPole-v1"]
    assert suites["mine"].envs == {"qzoo/Corridor-v0": {"gamma": 0.5}} and "minatar" in suites
    jobs = plan(suites["mine"], ["dqn", "rainbow"], [0, 1], tmp_path / "b", sets=["batch_size=16"])
    assert [(j.algo, j.seed) for j in jobs] == [("dqn", 0), ("rainbow", 0), ("dqn", 1), ("rainbow", 1)]
    assert {(j.config["n_timesteps"], j.config["gamma"], j.config["batch_size"], j.config["torch_threads"])
            for j in jobs} == {(100, 0.5, 16, 1)}
    assert jobs[3].run_dir == str(tmp_path / "b" / "mine" / "qzoo/Corridor-v0" / "rainbow_s1")


@pytest.mark.parametrize("text,needle", [
    ("s:\n  envs: [NoSuchEnv-v0]\n", "suite 's', env 'NoSuchEnv-v0', dqn: unknown environment id"),
    ("s:\n  envs: []\n", "'envs' must be a non-empty list"),
    ("s:\n  envz: [CartPole-v1]\n", "must be a mapping with an 'envs'"),
    ("s:\n  envs: [CartPole-v1]\n  settings: {learnig_rate: 1}\n", "unknown setting 'learnig_rate'"),
])
def test_bad_suites_are_refused_with_one_line(tmp_path, text, needle):
    path = tmp_path / "s.yml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        plan(load_suites(path)["s"], ["dqn"], [0], tmp_path)


def test_peer_refuses_atari_and_unknown_algos(tmp_path):
    suites = load_suites()
    with pytest.raises(ConfigError, match="--peer sb3 runs classic-control and MinAtar envs"):
        plan(suites["atari"], ["dqn"], [0], tmp_path, peer="sb3")
    with pytest.raises(ConfigError, match="unknown algorithm 'qlearning' in --algos"):
        plan(suites["classic"], ["qlearning"], [0], tmp_path)


def test_finished_means_result_json_with_the_same_settings(tmp_path):
    job = Job("CartPole-v1", "dqn", 0, {"seed": 0, "n_timesteps": 10}, str(tmp_path / "r"))
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "progress.csv").write_text("step\n")  # an unfinished run's files
    assert finished_result(job) is None
    # result.json is written last; the model file may be missing (results committed without their models)
    (tmp_path / "r" / "result.json").write_text(json.dumps({"model": "model.pt", "config": job.config}))
    payload = {"format": "qzoo-model", "version": ckpt.FORMAT_VERSION, "q_net": {"w": torch.arange(4.0)}}
    torch.save({**payload, "sha256": ckpt.payload_digest(payload)}, tmp_path / "r" / "model.pt")
    assert finished_result(job)["config"] == job.config
    # a model.pt whose weights changed after it was saved is refused, naming the file
    torch.save({**payload, "q_net": {"w": torch.arange(4.0) + 1}, "sha256": ckpt.payload_digest(payload)},
               tmp_path / "r" / "model.pt")
    with pytest.raises(ConfigError, match="model.pt' does not match the checksum it was saved with"):
        finished_result(job)
    torch.save({**payload, "sha256": ckpt.payload_digest(payload)}, tmp_path / "r" / "model.pt")
    other = Job("CartPole-v1", "dqn", 0, {"seed": 0, "n_timesteps": 20}, str(tmp_path / "r"))
    with pytest.raises(ConfigError, match="finished run with other settings \\(n_timesteps: 10, now 20\\)"):
        finished_result(other)
    # how a run was kept (checkpoints, replay in them, logs, threads) is not what it computed: still the same run
    kept_otherwise = Job("CartPole-v1", "dqn", 0, {**job.config, "checkpoint_freq": 25000, "save_replay": "auto",
                                                   "keep_checkpoints": 1, "torch_threads": 2}, str(tmp_path / "r"))
    assert finished_result(kept_otherwise)["config"] == job.config
    # a setting added to qzoo after the run: its default (which keeps the old behaviour) counts as what the run had,
    # any other value does not
    newer = Job("CartPole-v1", "dqn", 0, {**job.config, "augmentation": "none"}, str(tmp_path / "r"))
    assert "augmentation" not in job.config and finished_result(newer)["config"] == job.config
    changed = Job("CartPole-v1", "dqn", 0, {**job.config, "augmentation": "random_shift"}, str(tmp_path / "r"))
    with pytest.raises(ConfigError, match="other settings \\(augmentation: 'none', now 'random_shift'\\)"):
        finished_result(changed)
    # results committed without their model file (benchmarks/results/): still finished, and still checked
    (tmp_path / "r" / "model.pt").unlink()
    assert finished_result(job)["config"] == job.config
    with pytest.raises(ConfigError, match="finished run with other settings \\(n_timesteps: 10, now 20\\)"):
        finished_result(other)


def test_atari_iqm_of_human_normalised_scores_beside_the_anchors_iqm():
    from qzoo.bench.tables import iqm_rows, markdown

    # human-normalised: Boxing (0.1, 12.1), Breakout (1.7, 30.5), Freeway (0, 29.6), Pong (-20.7, 14.6)
    runs = [("ALE/Boxing-v5", [6.1, 12.1]), ("ALE/Breakout-v5", [1.7, 16.1]), ("ALE/Freeway-v5", [29.6, 0.0]),
            ("ALE/Pong-v5", [49.9, -3.05, 14.6])]  # Pong has a third seed: only the first two enter the IQM
    results = [result(env, "drq_eps", seed, f, 10.0) for env, finals in runs for seed, f in enumerate(finals)]
    results.append(result("CartPole-v1", "dqn", 0, 500.0, 800.0))  # not Atari: no aggregate row
    def pub(score, steps=1000):  # the runs above have n_timesteps 1000
        return {"score": score, "source": "p", "steps": steps}

    anchors = {"ALE/Boxing-v5": {"der": pub(0.1), "drq_eps": pub(6.0), "dqn": pub(70.0, None)},
               "ALE/Breakout-v5": {"der": pub(30.5), "drq_eps": pub(15.0), "dqn": pub(300.0, None)},
               "ALE/Freeway-v5": {"der": pub(14.8), "drq_eps": pub(20.0), "dqn": pub(30.0, None)},
               "ALE/Pong-v5": {"der": pub(-20.7), "dqn": pub(20.0, 10_000_000)}}
    # drq_eps lacks Pong, dqn states no budget or another one: neither enters the comparison
    summary = summarize(results, anchors)
    (row,) = iqm_rows(summary, anchors)
    # pooled normalised scores 0.5, 1, 0, 0.5, 1, 0, 2, 0.5 -> sorted 0 0 | .5 .5 .5 1 | 1 2 -> IQM 0.625
    assert (row["algo"], row["games"], row["runs_per_game"]) == ("drq_eps", 4, 2)
    assert row["iqm"] == pytest.approx(0.625)
    assert 0.0 <= row["low"] <= row["iqm"] <= row["high"] <= 2.0 and row["low"] < row["high"]
    # DER's per-game scores normalise to 0, 1, 0.5, 0 -> IQM of the middle two = 0.25; the means (9.1, 8.9, 14.8,
    # 20.48) beat it on Boxing and Pong (Freeway ties: not above)
    assert row["anchors"] == {"der": {"iqm": pytest.approx(0.25), "beats": 2}}
    md = markdown(summary, "", anchors)
    assert "| drq_eps | 4 | 2 | 0.625 [" in md and "| der 0.250 | der 2/4 |" in md
    # one run per game: a stratified bootstrap has nothing to resample, so no interval (not a zero-width one)
    one = [r for r in results if r["seed"] == 0 and r["env"].startswith("ALE/")]
    (single,) = iqm_rows(summarize(one, anchors), anchors)
    assert single["runs_per_game"] == 1 and single["low"] is None and single["high"] is None
    # seed 0's normalised scores 0.5, 0, 1, 2 -> the middle two: IQM 0.75
    assert single["iqm"] == pytest.approx(0.75)
    assert "| drq_eps | 4 | 1 | 0.750 (no CI: one run per game) |" in markdown(summarize(one, anchors), "", anchors)


def test_minatar_breakout_is_not_normalised_by_atari_breakouts_scores(tmp_path):
    from qzoo.bench.tables import human_normalized_score, iqm_rows

    assert human_normalized_score("ALE/Breakout-v5", 16.1) == pytest.approx(0.5)  # (16.1 - 1.7) / (30.5 - 1.7)
    assert human_normalized_score("BreakoutNoFrameskip-v4", 1.7) == pytest.approx(0.0)
    assert human_normalized_score("MinAtar/Breakout-v1", 16.1) is None
    assert iqm_rows(summarize(RESULTS, ANCHORS), ANCHORS) == []
    write_tables(tmp_path, RESULTS, ANCHORS)
    assert "IQM" not in (tmp_path / "results.md").read_text()
