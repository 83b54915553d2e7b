"""Aggregation math of qzoo.plotting against hand-computed values."""

from pathlib import Path

import numpy as np
import pytest

from qzoo.config import ConfigError
from qzoo.plotting import (
    Run,
    align,
    bootstrap_mean_ci,
    curves,
    iqm,
    normalized_curves,
    plot_curves,
    reference_lines,
    smooth,
    stratified_bootstrap_ci,
)


def test_smooth_is_a_trailing_moving_average():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_allclose(smooth(x, 1), x)
    np.testing.assert_allclose(smooth(x, 2), [1.0, 1.5, 2.5, 3.5, 4.5])
    np.testing.assert_allclose(smooth(x, 3), [1.0, 1.5, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(smooth(x, 10), [1.0, 1.5, 2.0, 2.5, 3.0])
    np.testing.assert_allclose(smooth(x, 10**30), [1.0, 1.5, 2.0, 2.5, 3.0])  # --smooth past int64: the same


def test_iqm_is_the_mean_of_the_middle_half_of_all_scores_pooled():
    assert iqm(np.arange(1.0, 9.0)) == pytest.approx(4.5)  # (3 + 4 + 5 + 6) / 4
    assert iqm([0, 1, 2, 3, 4, 5, 6, 1000]) == pytest.approx(3.5)  # the outlier is trimmed
    # runs x games are pooled: [[0, 1], [0.5, 1]] -> sorted 0, 0.5, 1, 1 -> middle two 0.5, 1
    assert iqm(np.array([[0.0, 1.0], [0.5, 1.0]])) == pytest.approx(0.75)


def test_bootstrap_mean_ci_percentiles_hand_computed():
    # 3 runs with values 0, 3, 6: a resample's mean is i + j + k with i, j, k uniform in {0, 1, 2}.
    # P(mean = 0) = 1/27 = 3.7% and P(mean <= 1) = 4/27 = 14.8%, so the 5th percentile is 1; by symmetry the
    # 95th is 5.
    values = np.array([[0.0], [3.0], [6.0]])
    mean, low, high = bootstrap_mean_ci(values, n_boot=20_000, interval=0.90, seed=0)
    assert mean[0] == pytest.approx(3.0)
    assert low[0] == pytest.approx(1.0) and high[0] == pytest.approx(5.0)
    again = bootstrap_mean_ci(values, n_boot=20_000, interval=0.90, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip((mean, low, high), again, strict=True))  # fixed seed


def test_bootstrap_of_one_run_or_equal_runs_has_no_width():
    mean, low, high = bootstrap_mean_ci(np.array([[1.0, 2.0, 3.0]]), n_boot=100)
    np.testing.assert_allclose(mean, [1, 2, 3])
    np.testing.assert_allclose(low, mean)
    np.testing.assert_allclose(high, mean)
    mean, low, high = bootstrap_mean_ci(np.full((4, 2), 7.0), n_boot=100)
    np.testing.assert_allclose(low, 7.0)
    np.testing.assert_allclose(high, 7.0)


def test_stratified_bootstrap_resamples_runs_within_each_game():
    # 2 runs x 2 games, statistic = mean. Game A's column resampled: mean 0, 1, 2 w.p. 1/4, 1/2, 1/4; game B's:
    # 4, 6, 8 likewise; the estimate is (A + B) / 2. P(2.0) = 1/16 = 6.25% < 10% and P(<= 2.5) = 3/16, so the
    # 10th percentile is 2.5 and (symmetric) the 90th is 4.5. Resampling whole rows instead (not stratified)
    # would give 2.0 w.p. 1/4, hence a 10th percentile of 2.0.
    scores = np.array([[0.0, 4.0], [2.0, 8.0]])
    point, low, high = stratified_bootstrap_ci(scores, np.mean, n_boot=20_000, interval=0.80, seed=1)
    assert point == pytest.approx(3.5)
    assert low == pytest.approx(2.5) and high == pytest.approx(4.5)


def test_stratified_bootstrap_of_one_run_is_the_point_estimate():
    point, low, high = stratified_bootstrap_ci(np.array([[0.0, 0.5, 1.0, 2.0]]), n_boot=50)
    assert point == low == high == pytest.approx(0.75)


def test_align_interpolates_other_runs_onto_the_first_runs_steps():
    a = (np.array([0.0, 10.0, 20.0, 30.0]), np.array([0.0, 1.0, 2.0, 3.0]))
    b = (np.array([0.0, 20.0]), np.array([10.0, 30.0]))
    steps, values = align([a, b])
    np.testing.assert_allclose(steps, [0, 10, 20])  # up to the shortest run's last step
    np.testing.assert_allclose(values, [[0, 1, 2], [10, 20, 30]])


def _run(env_id, label, steps, values, seed=0):
    cols = {"step": np.array(steps, float), "return_mean": np.array(values, float)}
    return Run(Path(f"/runs/{label}{seed}"), env_id, "dqn", seed, label, {"evaluations.csv": cols})


def test_curves_group_by_env_and_label_and_average_seeds():
    runs = [_run("CartPole-v1", "dqn", [1, 2], [10, 20], 0), _run("CartPole-v1", "dqn", [1, 2], [30, 40], 1),
            _run("CartPole-v1", "rainbow", [1, 2], [5, 5])]
    by_label = {c.label: c for c in curves(runs, "eval", n_boot=200)}
    np.testing.assert_allclose(by_label["dqn"].mean, [20, 30])
    assert by_label["dqn"].n_runs == 2 and by_label["rainbow"].n_runs == 1
    assert np.all(by_label["dqn"].low >= 10) and np.all(by_label["dqn"].high <= 40)
    smoothed = curves(runs[:1], "eval", window=2, n_boot=10)[0]
    np.testing.assert_allclose(smoothed.mean, [10, 15])
    with pytest.raises(ConfigError, match="no 'loss' values"):
        curves(runs, "loss")


def test_normalized_curves_are_the_iqm_of_human_normalised_scores():
    # pong: random -20.7, human 14.6; breakout: random 1.7, human 30.5 -> normalised 0 / 1 and 0.5 / 1,
    # pooled sorted 0, 0.5, 1, 1 -> IQM 0.75
    runs = [_run("ALE/Pong-v5", "dqn", [0, 100], [-20.7, -20.7], 0),
            _run("ALE/Pong-v5", "dqn", [0, 100], [14.6, 14.6], 1),
            _run("ALE/Breakout-v5", "dqn", [0, 100], [16.1, 16.1], 0),
            _run("ALE/Breakout-v5", "dqn", [0, 100], [30.5, 30.5], 1)]
    (curve,) = normalized_curves(runs, n_boot=200)
    np.testing.assert_allclose(curve.mean, [0.75, 0.75])
    assert curve.env_id == "2 games" and curve.n_runs == 2
    # Pong has seeds 1 and 0 (listed in that order), Breakout only seed 0: each game gives its first run by seed,
    # Pong's seed 0 (normalised 0) and Breakout's (0.5): IQM of two values = their mean 0.25
    (curve,) = normalized_curves([runs[1], runs[0], runs[2]], n_boot=10)
    np.testing.assert_allclose(curve.mean, [0.25, 0.25])
    assert curve.env_id == "2 games, the first 1 run(s) of each" and curve.n_runs == 1


def test_reference_lines_come_from_the_published_table():
    assert ("RL Zoo DQN, 50k steps", 500.0) in reference_lines("CartPole-v1")
    assert ("Nature DQN, 200M frames", 18.9) in reference_lines("ALE/Pong-v5")
    assert reference_lines("FrozenLake-v1") == []


def test_read_csv_columns_drops_a_half_written_last_line_and_refuses_what_is_not_a_csv_of_numbers(tmp_path):
    from qzoo.config import ConfigError
    from qzoo.plotting import read_csv_columns

    log = tmp_path / "progress.csv"
    log.write_bytes(b"step,loss\r\n100,0.5\r\n200,\r\n300,0.2")  # killed while writing the row of step 300
    columns = read_csv_columns(log)
    np.testing.assert_array_equal(columns["step"], [100.0, 200.0])
    np.testing.assert_array_equal(columns["loss"], [0.5, np.nan])
    log.write_bytes(b"step,loss\r\n100,0.5\r\n200,low\r\n")
    with pytest.raises(ConfigError, match=r"progress.csv', line 3: column 'loss' holds 'low', not a number"):
        read_csv_columns(log)
    log.write_bytes(bytes(range(128, 256)))
    with pytest.raises(ConfigError, match=r"progress.csv' is not a text file \(not UTF-8\)"):
        read_csv_columns(log)


def test_a_curve_of_one_evaluation_is_drawn_as_a_point_with_its_ci():
    """Atari-100k evaluates once, at the end: a one-point line draws nothing, so the point gets a marker and its
    bootstrap CI an error bar (one run: no bar)."""
    runs = [_run("ALE/Pong-v5", "dqn", [100], [-20.7], 0), _run("ALE/Pong-v5", "dqn", [100], [14.6], 1),
            _run("ALE/Breakout-v5", "dqn", [100], [16.1], 0), _run("ALE/Breakout-v5", "dqn", [100], [30.5], 1)]
    for subset, bars in ((runs, 1), (runs[::2], 0)):
        fig = plot_curves(normalized_curves(subset, n_boot=50), ylabel="IQM", references=False)
        (ax,) = fig.axes
        assert [line.get_marker() for line in ax.lines][:1] == ["o"]
        assert len(ax.collections) == bars  # the error bar's line collection
        np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.75 if bars else 0.25])


def _run_dir(path: Path, algo: str, seed: int, scores: list[float]) -> Path:
    """A run directory as a run leaves it: config.yaml, progress.csv and evaluations.csv."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(f"env_id: ALE/Pong-v5\nalgo: {algo}\nseed: {seed}\nn_timesteps: 200\n")
    (path / "progress.csv").write_text("step,return_mean\n100,0\n200,1\n")
    rows = "".join(f"{100 * (i + 1)},{s}\n" for i, s in enumerate(scores))
    (path / "evaluations.csv").write_text("step,return_mean\n" + rows)
    return path


def test_a_labelled_folder_of_two_algos_gives_each_algo_its_own_curve(tmp_path):
    """`b=DIR` over DER and DrQ(eps) runs: two curves b:der and b:drq_eps, not one curve averaging both algos as
    seeds; a labelled folder of one algo keeps its label, and an unlabelled folder is labelled by algo."""
    from qzoo.plotting import find_runs

    _run_dir(tmp_path / "mixed" / "der_s0", "der", 0, [-21, -19])
    _run_dir(tmp_path / "mixed" / "drq_eps_s0", "drq_eps", 0, [-21, -9])
    _run_dir(tmp_path / "mixed" / "drq_eps_s1", "drq_eps", 1, [-21, -13])
    _run_dir(tmp_path / "one" / "der_s1", "der", 1, [-20, -15])
    runs = find_runs([f"b={tmp_path / 'mixed'}", f"a={tmp_path / 'one'}"])
    assert sorted((r.label, r.seed) for r in runs) == [("a", 1), ("b:der", 0), ("b:drq_eps", 0), ("b:drq_eps", 1)]
    by_label = {c.label: c for c in curves(runs, "eval", n_boot=50)}
    np.testing.assert_allclose(by_label["b:drq_eps"].mean, [-21, -11])  # (-9 + -13) / 2: its own two seeds
    np.testing.assert_allclose(by_label["b:der"].mean, [-21, -19])
    assert {r.label for r in find_runs([str(tmp_path / "mixed")])} == {"der", "drq_eps"}
