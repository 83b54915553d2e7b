"""qzoo tune end to end: a small study on SQLite, pruning, two workers on one study, PostgreSQL with a worker
killed mid-trial, and bad input."""

import csv
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from qzoo.config import ConfigError
from qzoo.tuning import TuneOptions, open_storage, tune

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
QZOO = [sys.executable, "-m", "qzoo"]
ENV = {**os.environ, "PYTHONPATH": os.getcwd()}
FROZEN = "env_kwargs={map_name: 4x4, is_slippery: false}"


def run(args, timeout=240):
    return subprocess.run(QZOO + args, capture_output=True, text=True, timeout=timeout, env=ENV)


def read_csv(path):
    return list(csv.DictReader(open(path)))


def test_two_workers_on_sqlite_then_train_with_the_best_preset(tmp_path):
    """Two worker processes share one SQLite study: the built-in DQN space (derived parameters included),
    4 trials x 2 seeds; both workers contribute, no trial is lost or run twice, and the best preset trains."""
    r = run(["tune", "qzoo/Corridor-v0", "--workers", "2", "--n-trials", "4", "--seeds", "2", "--n-timesteps", "600",
             "--n-evals", "2", "--eval-episodes", "2", "--sampler", "random", "--sampler-seed", "3",
             "--tunes-dir", str(tmp_path), "--study-name", "small"])
    assert r.returncode == 0, r.stderr
    study_dir = tmp_path / "qzoo/Corridor-v0/small"
    assert {p.name for p in study_dir.iterdir()} == {"study.db", "best_preset.yml", "trials.csv", "history.png",
                                                     "importances.png"}
    trials = optuna.load_study(study_name="small", storage=f"sqlite:///{study_dir}/study.db").trials
    # workers stop starting trials at 4 finished + running; both may pass that check at once (one extra)
    assert len(trials) in (4, 5) and all(t.state == TrialState.COMPLETE for t in trials)
    assert [t.number for t in trials] == list(range(len(trials)))
    workers = {}
    for t in trials:  # each trial started exactly once, by the worker recorded in it; live progress for each
        (index,) = re.findall(rf"^\[worker (\d)\] trial {t.number} started: learning_rate=\S+ batch_size=\d+ ",
                              r.stderr, re.M)
        workers.setdefault(index, set()).add(t.user_attrs["worker"])
        for seed, step in ((0, 300), (0, 600), (1, 300), (1, 600)):
            assert f"[worker {index}] trial {t.number} seed {seed} step {step}: " in r.stderr
        assert re.search(rf"^\[worker {index}\] trial {t.number} complete: .* best: trial \d = ", r.stderr, re.M)
    assert set(workers) == {"0", "1"}, "both workers ran trials"
    assert all(len(pids) == 1 for pids in workers.values()) and workers["0"] != workers["1"]

    rows = read_csv(study_dir / "trials.csv")
    assert [int(row["number"]) for row in rows] == [t.number for t in trials]
    for row in rows:  # the score is the mean of the two seeds' final evaluations
        seeds = [float(s) for s in row["seed_scores"].split()]
        assert len(seeds) == 2 and float(row["value"]) == pytest.approx(sum(seeds) / 2)
        assert row["last_step"] == "3"  # seed 1's final evaluation: step 1 * n_evals + 1
    best = max(rows, key=lambda row: float(row["value"]))  # (ties: the first, as Optuna's best_trial)

    preset = yaml.safe_load(open(study_dir / "best_preset.yml"))
    assert preset["gamma"] == pytest.approx(1 - float(best["params_one_minus_gamma"]))
    train_freq = int(best["params_train_freq"])
    assert preset["train_freq"] == train_freq
    assert preset["gradient_steps"] == max(train_freq // int(best["params_subsample_steps"]), 1)
    assert preset["net_arch"] == {"tiny": [64], "small": [64, 64], "medium": [256, 256]}[best["params_net_arch"]]
    assert preset["learning_rate"] == float(best["params_learning_rate"]) and preset["n_timesteps"] == 600
    assert "env_id" not in preset and "seed" not in preset
    assert f"train with: qzoo train qzoo/Corridor-v0 --algo dqn --preset {study_dir}" in \
        (study_dir / "best_preset.yml").read_text()
    assert "train with:    qzoo train qzoo/Corridor-v0 --algo dqn --preset" in r.stdout

    runs = tmp_path / "runs"
    t = run(["train", "qzoo/Corridor-v0", "--preset", str(study_dir / "best_preset.yml"), "--runs-dir", str(runs),
             "--quiet"])
    assert t.returncode == 0, t.stderr
    (run_dir,) = (runs / "qzoo/Corridor-v0").iterdir()
    trained = yaml.safe_load(open(run_dir / "config.yaml"))
    # config.yaml records what an `auto` tri-state resolved to (overlap, bf16); every other setting loads unchanged
    changed = {k: (v, trained[k]) for k, v in preset.items() if trained[k] != v and v != "auto"}
    assert changed == {"progress_bar": (True, False)}, "the preset file loads unchanged (--quiet: no progress bar)"


def _frozenlake_study(tmp_path, pruner, seeds=1, **options):
    """Three trials that learn FrozenLake (4x4, deterministic) and one that never explores (epsilon 0: it walks
    left from the start forever, return 0.0), queued in that order; seed 2, where the learners' evaluations are
    1.0 at every step (tabular Q-learning is deterministic)."""
    space = tmp_path / "space.yml"
    space.write_text("exploration_initial_eps: [0.0, 1.0]\nexploration_final_eps: [0.0, 0.1]\n")
    url = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(storage=url, study_name="prune", direction="maximize")
    for eps in (1.0, 1.0, 1.0):
        study.enqueue_trial({"exploration_initial_eps": eps, "exploration_final_eps": 0.1})
    study.enqueue_trial({"exploration_initial_eps": 0.0, "exploration_final_eps": 0.0})
    options = TuneOptions("FrozenLake-v1", algo="qlearning", n_trials=4, seeds=seeds, seed=2, n_timesteps=6000,
                          n_evals=3, eval_episodes=1, pruner=pruner, startup_trials=3, storage=url,
                          study_name="prune", tunes_dir=str(tmp_path), space=str(space), space_only=True,
                          sets=[FROZEN, "exploration_decay_rate=0.005"], **options)
    result = tune(options, out=None)
    return result, optuna.load_study(study_name="prune", storage=url).trials


def test_median_pruner_prunes_a_trial_reporting_poor_values(tmp_path):
    result, trials = _frozenlake_study(tmp_path, "median")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3 + [TrialState.PRUNED]
    for t in trials[:3]:
        assert t.value == 1.0 and t.intermediate_values == {0: 1.0, 1: 1.0, 2: 1.0}
    # step 0 is the warm-up (n_evals // 3 = 1 step); at step 1 its 0.0 is below the median 1.0: pruned there
    assert trials[3].intermediate_values == {0: 0.0, 1: 0.0}
    assert trials[3].user_attrs["pruned_at"] == "seed 2 step 4000"
    row = read_csv(result.study_dir / "trials.csv")[3]
    assert (row["state"], row["pruned_at"], row["value"]) == ("PRUNED", "seed 2 step 4000", "0.0")  # its last report


def test_without_a_pruner_the_same_trial_runs_to_the_end(tmp_path):
    _, trials = _frozenlake_study(tmp_path, "none")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert trials[3].value == 0.0 and trials[3].intermediate_values == {0: 0.0, 1: 0.0, 2: 0.0}


def test_prune_below_stops_a_trial_at_the_first_seed_that_ends_below_it(tmp_path):
    """--prune-below 0.5 --objective min, 2 seeds per trial, no pruner: the learners end at 1.0 on both seeds and
    complete; the non-explorer's seed 2 ends at 0.0 < 0.5, so its trial is pruned there and seed 3 never trains."""
    result, trials = _frozenlake_study(tmp_path, "none", seeds=2, objective="min", prune_below=0.5)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3 + [TrialState.PRUNED]
    for t in trials[:3]:
        assert t.value == 1.0 and t.user_attrs["seed_scores"] == [1.0, 1.0]
        assert sorted(t.intermediate_values) == [0, 1, 2, 3, 4, 5]  # seeds 2 and 3, 3 evaluations each
    pruned = trials[3]
    assert sorted(pruned.intermediate_values) == [0, 1, 2]  # seed 2 only: seed 3 was not trained
    assert pruned.user_attrs["seed_scores"] == [0.0]
    assert pruned.user_attrs["pruned_at"] == "seed 2 final 0.00 < 0.5"
    row = read_csv(result.study_dir / "trials.csv")[3]
    assert (row["state"], row["pruned_at"], row["seed_scores"]) == ("PRUNED", "seed 2 final 0.00 < 0.5", "0")


def test_prune_below_at_or_under_every_final_score_prunes_nothing(tmp_path):
    """The same study with --prune-below 0: the non-explorer's 0.0 is not below 0, so every trial completes and the
    non-explorer trains both seeds (its score: min 0.0)."""
    _, trials = _frozenlake_study(tmp_path, "none", seeds=2, objective="min", prune_below=0.0)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert trials[3].value == 0.0 and trials[3].user_attrs["seed_scores"] == [0.0, 0.0]
    assert sorted(trials[3].intermediate_values) == [0, 1, 2, 3, 4, 5]


# ---- PostgreSQL ---------------------------------------------------------------------------------------------
def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL server on a free loopback port (initdb into a temp dir, run as the postgres user
    when the tests run as root, which postgres refuses), with an empty database; stopped and removed after."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        reason = "PostgreSQL server binaries (initdb, pg_ctl) not found; `bash scripts/setup.sh --dev` installs them"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    as_user = []
    root = Path(tempfile.mkdtemp(prefix="qzoo-pg-"))
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", _free_port()
    sh = lambda *cmd: subprocess.run(as_user + [str(c) for c in cmd], check=True, capture_output=True, timeout=120)
    sh(bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    sh(bin_dir / "pg_ctl", "-D", data, "-l", root / "server.log", "-w", "-t", "60", "start",
       "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off")
    try:
        sh(bin_dir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "qzoo_test")
        yield f"postgresql://postgres@127.0.0.1:{port}/qzoo_test"
    finally:
        sh(bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_two_workers_one_killed_mid_trial(tmp_path, postgres_url):
    """Two `qzoo tune` processes join one study on PostgreSQL; one is SIGKILLed in the middle of a trial. Its
    trial must end FAIL (its heartbeat stops), be queued again and run by the other worker, and the study must
    finish with every other trial COMPLETE."""
    space = tmp_path / "space.yml"
    space.write_text("learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n")
    # 4000 steps: a trial must stay RUNNING long enough for the 0.2 s poll below to catch the victim in one (at
    # 1000 steps the faster plain-MLP update made trials short enough to be missed about one time in three)
    args = ["tune", "qzoo/Corridor-v0", "--storage", postgres_url, "--study-name", "pg", "--n-trials", "4",
            "--n-timesteps", "4000", "--n-evals", "2", "--eval-episodes", "1", "--pruner", "none",
            "--space", str(space), "--space-only", "--heartbeat", "1", "--tunes-dir", str(tmp_path)]
    victim = subprocess.Popen(QZOO + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    time.sleep(1.0)  # the victim creates the study; the survivor joins it
    survivor = subprocess.Popen(QZOO + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        storage = open_storage(postgres_url, heartbeat=1)  # (the workers may be creating the schema right now)
        deadline, killed = time.time() + 90, None
        while killed is None and time.time() < deadline:
            time.sleep(0.2)
            try:
                trials = optuna.load_study(study_name="pg", storage=storage).trials
            except KeyError:  # not created yet
                continue
            for t in trials:  # mid-trial: running with its settings drawn (a trial killed before its first
                # suggest has no params, and its retry draws new ones: the check of retry.params below needs them)
                if t.state == TrialState.RUNNING and t.params \
                        and t.user_attrs.get("worker", "").endswith(f":{victim.pid}"):
                    victim.send_signal(signal.SIGKILL)
                    killed = t.number
        assert killed is not None, "the victim never ran a trial"
        out, err = survivor.communicate(timeout=180)
        assert survivor.returncode == 0, err
    finally:
        for p in (victim, survivor):
            if p.poll() is None:
                p.kill()
            p.communicate()
    assert victim.returncode == -signal.SIGKILL

    trials = optuna.load_study(study_name="pg", storage=storage).trials
    states = [t.state for t in trials]
    assert trials[killed].state == TrialState.FAIL
    assert states.count(TrialState.FAIL) == 1 and states.count(TrialState.COMPLETE) == len(trials) - 1
    assert states.count(TrialState.COMPLETE) in (4, 5)  # 4, or one extra if both workers started one at once
    (retry,) = [t for t in trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed]
    assert retry.state == TrialState.COMPLETE and retry.params == trials[killed].params
    assert [t.number for t in trials] == list(range(len(trials)))
    assert f"trial {retry.number} started: " in err  # the survivor ran the retry
    rows = read_csv(tmp_path / "qzoo/Corridor-v0/pg/trials.csv")
    assert [row["state"] for row in rows] == [s.name for s in states]
    assert rows[retry.number]["retry_of"] == str(killed)


# ---- bad input ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra,needle", [
    (["--storage", "postgresql://qzoo@127.0.0.1:1/nothing", "--study-name", "s"],
     "cannot open storage postgresql://qzoo@127.0.0.1:1/nothing: connection to server at"),
    (["--storage", "not a url", "--study-name", "s"], "--storage must be a database URL such as sqlite:///"),
    (["--sampler", "cmaes"], "unknown sampler 'cmaes'; allowed: tpe, random"),
    (["--pruner", "hyperband"], "unknown pruner 'hyperband'; allowed: median, none, halving"),
    (["--space", "SPACE", "--space-only"], "the search space is empty: nothing to tune"),
    (["--space", "missing.yml"], "search space file 'missing.yml' does not exist"),
    (["--set", "learnig_rate=1"], "unknown setting 'learnig_rate' (did you mean 'learning_rate'?)"),
    (["--enqueue", "learning_rate=0.5"], "--enqueue: learning_rate=0.5 is not in the search space (allowed: float "
                                         "log-uniform in [1e-05, 0.01])"),
    (["--prune-below", "nan", "--objective", "min"], "--prune-below must be a finite number (an evaluation return), "
                                                     "got nan"),
    (["--prune-below", "200"], "--prune-below needs --objective min"),
    (["--enqueue", "batch_size=64", "--enqueue", "dueling=true"], "--enqueue: 'dueling' is not a parameter of the "
                                                                  "search space"),
])
def test_bad_input_gives_one_line_and_exit_code_2(tmp_path, capsys, extra, needle):
    from qzoo.cli import main

    space = tmp_path / "space.yml"
    space.write_text("learning_rate: null\n")
    code = main(["tune", "CartPole-v1", "--tunes-dir", str(tmp_path / "tunes")]
                + [str(space) if a == "SPACE" else a for a in extra])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qzoo tune: error: ") and needle in lines[0], err
    assert not (tmp_path / "tunes").exists()  # nothing written


def test_prune_below_that_is_not_a_number_gives_one_line(tmp_path, capsys):
    from qzoo.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["tune", "CartPole-v1", "--objective", "min", "--prune-below", "abc", "--tunes-dir", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert err.startswith("qzoo tune: error: argument --prune-below: invalid float value: 'abc'"), err
    assert not (tmp_path / "t").exists()


def test_bad_input_from_the_command_line(tmp_path):
    """As a user sees it: a real process, one line on stderr, exit code 2, no traceback."""
    r = run(["tune", "CartPole-v1", "--storage", "postgresql://qzoo@127.0.0.1:1/nothing", "--study-name", "s",
             "--tunes-dir", str(tmp_path)], timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("qzoo tune: error: cannot open storage ") and r.stderr.count("\n") == 1


def test_workers_opening_an_empty_postgres_database_at_once_all_get_the_study(postgres_url):
    """Workers started together on a fresh database race to create optuna's tables and enum types; the losers see
    "already exists" (IntegrityError) from PostgreSQL. open_storage retries, so every one of them gets the storage."""
    import threading

    results, barrier = [], threading.Barrier(6)

    def worker():
        barrier.wait()
        try:
            storage = open_storage(postgres_url, heartbeat=1)
            results.append(optuna.create_study(study_name="race", storage=storage, load_if_exists=True).study_name)
        except Exception as e:  # noqa: BLE001 - the test reports whatever a worker hit
            results.append(e)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == ["race"] * 6, results


@pytest.mark.parametrize("objective", ["min", "mean-std"])
def test_objective_scores_a_trial_by_its_worst_seed_or_mean_minus_spread(tmp_path, objective):
    """Slippery FrozenLake after 5000 steps (learning rate 0.3): the three seeds' final evaluations differ, and the
    trial's value is the objective over them (min; mean - population std), as trials.csv and best_preset.yml say."""
    from qzoo.tuning.objectives import aggregate

    space = tmp_path / "space.yml"
    space.write_text("exploration_final_eps: [0.05]\n")
    options = TuneOptions("FrozenLake-v1", algo="qlearning", n_trials=1, seeds=3, seed=7, n_timesteps=5000,
                          n_evals=1, eval_episodes=50, pruner="none", objective=objective, tunes_dir=str(tmp_path),
                          study_name="objective", space=str(space), space_only=True,
                          sets=["learning_rate=0.3", "exploration_decay_rate=0.01"])
    result = tune(options, out=None)
    (trial,) = optuna.load_study(study_name="objective", storage=result.storage).trials
    scores = trial.user_attrs["seed_scores"]
    assert len(scores) == 3 and len(set(scores)) > 1, scores  # the seeds differ, so the objectives differ
    mean = sum(scores) / 3
    std = (sum((s - mean) ** 2 for s in scores) / 3) ** 0.5
    expected = min(scores) if objective == "min" else mean - std
    assert trial.value == pytest.approx(expected) == aggregate(objective, scores)
    assert trial.value < mean
    assert float(read_csv(result.study_dir / "trials.csv")[0]["value"]) == pytest.approx(expected)
    header = (result.study_dir / "best_preset.yml").read_text().splitlines()[0]
    assert ("the lowest final evaluation" if objective == "min" else "minus the standard deviation") in header
    # a study is one objective: joining it with another is refused
    with pytest.raises(ConfigError, match=f"study 'objective' exists with objective = '{objective}', this command "
                                          "has 'mean'"):
        tune(TuneOptions(**{**options.__dict__, "objective": "mean"}), out=None)


def test_enqueued_trials_run_first_and_are_not_queued_again_on_resume(tmp_path):
    """--enqueue: the given trials run before the sampled ones, with the parameters they name (the rest sampled);
    resuming the study with the same --enqueue does not run them twice."""
    options = TuneOptions("FrozenLake-v1", algo="qlearning", n_trials=3, n_timesteps=300, n_evals=1, eval_episodes=2,
                          pruner="none", tunes_dir=str(tmp_path), study_name="enq", sampler_seed=0,
                          sets=[FROZEN], enqueue=["learning_rate=0.5,one_minus_gamma=0.01", "learning_rate=0.02"])
    result = tune(options, out=None)
    trials = optuna.load_study(study_name="enq", storage=result.storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert trials[0].params["learning_rate"] == 0.5 and trials[0].params["one_minus_gamma"] == 0.01
    assert trials[1].params["learning_rate"] == 0.02 and trials[1].params["one_minus_gamma"] != 0.01  # sampled
    assert trials[2].params["learning_rate"] not in (0.5, 0.02)
    tune(TuneOptions(**{**options.__dict__, "n_trials": 4}), out=None)
    trials = optuna.load_study(study_name="enq", storage=result.storage).trials
    rates = [t.params["learning_rate"] for t in trials]
    assert len(trials) == 4 and rates.count(0.5) == rates.count(0.02) == 1
