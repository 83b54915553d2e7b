"""The Atari suite's final-score chart (qzoo/bench/figures.py), read back from the matplotlib figure: bar heights,
seed dots and anchor markers against hand-computed human-normalised scores."""

import pytest
from matplotlib.patches import Rectangle

from qzoo.bench.figures import score_figure, write_score_figure
from qzoo.bench.tables import summarize

ANCHORS = {
    "ALE/Pong-v5": {"dqn": {"score": 20.6, "source": "RL Zoo DQN, 10M steps"},  # another budget: not drawn
                    "der": {"steps": 100, "score": -19.3, "source": "DER (van Hasselt et al. 2019), 100k"}},
    "ALE/Breakout-v5": {"der": {"steps": 100, "score": 1.9, "source": "DER (van Hasselt et al. 2019), 100k"}},
}


def result(env, algo, seed, final):
    return {"env": env, "algo": algo, "seed": seed, "n_timesteps": 100, "final_eval": final, "final_eval_std": 0.0,
            "best_eval": None, "train_return": None, "steps_per_s": 1.0, "seconds": 1.0, "run_dir": "x"}


# Pong: random -20.7, human 14.6 (span 35.3); Breakout: random 1.7, human 30.5 (span 28.8)
RESULTS = [result("ALE/Pong-v5", "drq_eps", 0, -13.64), result("ALE/Pong-v5", "drq_eps", 1, -6.58),
           result("ALE/Breakout-v5", "drq_eps", 0, 16.1), result("ALE/Breakout-v5", "drq_eps", 1, 1.7),
           result("ALE/Pong-v5", "der", 0, -20.7)]


def _points(ax):
    """(x, y) of every marker drawn with ax.plot, by marker."""
    out = {}
    for line in ax.get_lines():
        if line.get_marker() not in (None, "None", ""):
            out.setdefault(line.get_marker(), []).extend(zip(line.get_xdata(), line.get_ydata(), strict=True))
    return out


def test_bars_dots_and_anchors_are_the_human_normalised_scores():
    fig = score_figure(summarize(RESULTS, ANCHORS), ANCHORS)
    ax, ax_iqm = fig.axes
    bars = sorted((round(p.get_x() + p.get_width() / 2, 3), p.get_height())
                  for p in ax.patches if isinstance(p, Rectangle))
    # games in first-seen order (Pong at 0, Breakout at 1), algos drq_eps then der: bar centres 0 -/+ 0.2
    assert [b[0] for b in bars] == [-0.2, 0.2, 0.8]
    assert bars[0][1] == pytest.approx((0.2 + 0.4) / 2)  # Pong drq_eps: (-13.64 + 20.7) / 35.3 = 0.2, 0.4
    assert bars[1][1] == pytest.approx(0.0)  # Pong der: random's score
    assert bars[2][1] == pytest.approx((0.5 + 0.0) / 2)  # Breakout drq_eps: 14.4 / 28.8 = 0.5, 0
    points = _points(ax)
    seeds = sorted((round(x, 3), round(y, 9)) for x, y in points["o"])
    assert seeds == [(-0.2, 0.2), (-0.2, 0.4), (0.2, 0.0), (0.8, 0.0), (0.8, 0.5)]
    # DER's anchors at the game's centre; RL Zoo's 10M-step Pong score is another budget and left out
    assert [x for x, _ in sorted(points["v"])] == [0.0, 1.0]
    assert [y for _, y in sorted(points["v"])] == pytest.approx([1.4 / 35.3, 0.2 / 28.8])
    labels = ax.get_legend().get_texts()
    assert sorted(t.get_text() for t in labels) == ["DER (published)", "der (mean; dots: seeds)",
                                                    "drq_eps (mean; dots: seeds)"]
    # the IQM panel: drq_eps pools 4 scores 0.2, 0.4, 0.5, 0 -> the middle two, 0.3; der on Pong alone 0.0
    iqm_points = _points(ax_iqm)
    assert sorted(y for _, y in iqm_points["o"]) == pytest.approx([0.0, 0.3])
    # an interval for drq_eps (2 runs a game) only: der's one run has no bootstrap to draw
    (bars_iqm,) = ax_iqm.containers
    assert bars_iqm.lines[0].get_ydata() == pytest.approx([0.3])
    # DER's published IQM on drq_eps's two games: the mean of both (trim 25% of 2 drops none)
    assert sorted(y for _, y in iqm_points["v"]) == pytest.approx(sorted([1.4 / 35.3, (1.4 / 35.3 + 0.2 / 28.8) / 2]))


def test_no_chart_without_human_normalised_games(tmp_path):
    results = [result("CartPole-v1", "dqn", 0, 500.0), result("MinAtar/Breakout-v1", "dqn", 0, 5.0)]
    assert score_figure(summarize(results, {}), {}) is None
    assert write_score_figure(tmp_path, summarize(results, {}), {}) is None
    assert list(tmp_path.iterdir()) == []


def test_written_chart_is_a_png(tmp_path):
    from PIL import Image

    path = write_score_figure(tmp_path, summarize(RESULTS, ANCHORS), ANCHORS)
    assert path == tmp_path / "scores.png"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > image.height > 100


# ---- qzoo plot --final: the same chart from run directories ------------------------------------------------------
def _run(env_id, label, seed, steps, values, n_timesteps=100):
    from pathlib import Path

    import numpy as np

    from qzoo.plotting import Run

    cols = {"step": np.array(steps, float), "return_mean": np.array(values, float)}
    return Run(Path(f"/runs/{label}{seed}"), env_id, label, seed, label, {"evaluations.csv": cols},
               n_timesteps=n_timesteps)


def test_final_rows_take_each_finished_runs_last_evaluation_by_seed():
    from qzoo.bench.figures import final_rows

    runs = [_run("ALE/Pong-v5", "drq_eps", 1, [50, 100], [-20.0, -6.58]),
            _run("ALE/Pong-v5", "drq_eps", 0, [100], [-13.64]),
            _run("ALE/Pong-v5", "drq_eps", 2, [50], [-1.0]),  # evaluated at 50 of 100 steps: not finished
            _run("ALE/Pong-v5", "der", 0, [], []),  # never evaluated
            _run("ALE/Breakout-v5", "drq_eps", 0, [100], [16.1])]
    rows, left_out = final_rows(runs)
    assert [(r["env"], r["algo"], r["seeds"], r["finals"], r["n_timesteps"]) for r in rows] == [
        ("ALE/Pong-v5", "drq_eps", [0, 1], [-13.64, -6.58], 100), ("ALE/Breakout-v5", "drq_eps", [0], [16.1], 100)]
    assert rows[0]["mean"] == pytest.approx((-13.64 - 6.58) / 2)
    assert [(r.algo, r.seed) for r in left_out] == [("drq_eps", 2), ("der", 0)]
    # drawn as the suite's chart draws it: Pong's bar at the mean of 0.2 and 0.4
    fig = score_figure(rows, ANCHORS, interval=0.9)
    ax, ax_iqm = fig.axes
    assert sorted(p.get_height() for p in ax.patches if isinstance(p, Rectangle)) == pytest.approx([0.3, 0.5])
    assert ax_iqm.get_title().startswith("IQM [90% CI]")


def test_final_rows_refuse_one_label_at_two_budgets():
    from qzoo.bench.figures import final_rows
    from qzoo.config import ConfigError

    with pytest.raises(ConfigError, match=r"different budgets \(100, 200 steps\)"):
        final_rows([_run("ALE/Pong-v5", "dqn", 0, [100], [0.0]), _run("ALE/Pong-v5", "dqn", 1, [200], [0.0], 200)])
