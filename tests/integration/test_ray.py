"""`qzoo bench --ray` and `qzoo tune --ray` on a real multi-node Ray cluster on this machine (loopback only).

The cluster is started once for the module (ray.cluster_utils.Cluster): a head node with no CPUs, so every run
lands on one of two worker nodes with their own CPUs; the fault test kills one of them mid-run (the other one
takes the retried runs and serves the later tests)."""

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Ray's one-machine mode: every address it resolves (drivers, nodes) is 127.0.0.1, nothing beyond loopback. Set
# before ray is imported; the qzoo commands inherit it.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_worker_niceness", "0")  # the runs at the tests' priority (Ray's default: nice 15)
from ray.cluster_utils import Cluster  # noqa: E402  (the ray extra: scripts/setup.sh --dev installs it)

QZOO = [sys.executable, "-m", "qzoo"]
ENV = {**os.environ, "PYTHONPATH": os.getcwd(), "OMP_WAIT_POLICY": "PASSIVE", "RAY_DEDUP_LOGS": "0"}
NODE = {"node_ip_address": "127.0.0.1", "object_store_memory": 80 * 2**20}
# 4 runs: two CartPole runs long enough to be killed after a checkpoint (8,000 steps: with the MLP fast path a
# 3,000-step run could finish between the test seeing its first checkpoint and the node's death), two short
# corridor runs.
SUITE = """small:
  description: a small suite for the Ray tests
  settings: {eval_freq: 0, eval_episodes: 2, tensorboard: false, learning_starts: 300, log_interval: 250,
             save_replay: "true", keep_checkpoints: 2}
  envs:
    CartPole-v1: {n_timesteps: 8000, checkpoint_freq: 1000, train_freq: 4, gradient_steps: 1, buffer_size: 5000,
                  target_update_interval: 200}
    qzoo/Corridor-v0: {n_timesteps: 600, checkpoint_freq: 300}
long:
  settings: {eval_freq: 0, tensorboard: false, log_interval: 200, learning_starts: 100}
  envs:
    CartPole-v1: {n_timesteps: 1000000}
diverge:
  envs:
    qzoo/Corridor-v0: {n_timesteps: 3000, learning_rate: 1.0e+30, learning_starts: 250, train_freq: 1,
                       eval_freq: 0, eval_episodes: 1, tensorboard: false}
"""
TIMING = {"steps_per_s", "time_s", "seconds", "run_dir"}
ATTEMPT = ".qzoo-ray-attempt.json"


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={**NODE, "num_cpus": 0, "include_dashboard": False})
    c.workers = [c.add_node(**NODE, num_cpus=2) for _ in range(2)]
    c.wait_for_nodes()
    yield c
    c.shutdown()


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("suites") / "suites.yml"
    path.write_text(SUITE)
    return path


def qzoo(args, timeout=240, env=ENV):
    return subprocess.run(QZOO + [str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=env)


def rows(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(open(path))]


@pytest.mark.timeout(600)  # ~50 s alone; a machine shared with many other jobs has taken 4 min
def test_bench_on_ray_survives_a_node_death_and_equals_a_local_bench(cluster, suite_file, tmp_path):
    bench = ["bench", "small", "--suite-file", suite_file, "--seeds", "2"]
    local = qzoo(bench + ["--jobs", "2", "--bench-dir", tmp_path / "local"])
    assert local.returncode == 0, local.stderr

    proc = subprocess.Popen(QZOO + [str(a) for a in bench + ["--ray", cluster.address, "--bench-dir",
                                                               tmp_path / "ray"]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    # kill the node of the first CartPole run that has checkpointed and is not finished
    suite_dir = tmp_path / "ray" / "small"
    deadline, victim = time.monotonic() + 180, None
    while victim is None:
        assert proc.poll() is None and time.monotonic() < deadline, "no run checkpointed"
        for run_dir in sorted(suite_dir.glob("CartPole-v1/dqn_s*")):
            if ((run_dir / ATTEMPT).is_file() and list(run_dir.glob("checkpoints/step_*.json"))
                    and not (run_dir / "result.json").exists()):
                victim = run_dir
                break
        time.sleep(0.05)
    (node,) = [n for n in cluster.workers if n.node_id == json.loads((victim / ATTEMPT).read_text())["node_id"]]
    cluster.remove_node(node, allow_graceful=False)
    assert not (victim / "result.json").exists()
    cluster.workers.remove(node)  # the other worker node takes the retried runs
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "(4 run, 0 already finished)" in out

    # every run exactly once, results and logs equal to the local bench's, resumed runs included
    results = {p.parent.relative_to(suite_dir): json.loads(p.read_text()) for p in suite_dir.rglob("result.json")}
    assert sorted(map(str, results)) == ["CartPole-v1/dqn_s0", "CartPole-v1/dqn_s1", "qzoo/Corridor-v0/dqn_s0",
                                         "qzoo/Corridor-v0/dqn_s1"]
    resumed = results[victim.relative_to(suite_dir)]["ray"]
    assert resumed["attempt"] == 2 and resumed["resumed_from"] in range(1000, 8000, 1000), resumed
    assert resumed["node_id"] == cluster.workers[0].node_id
    assert f"CartPole-v1 dqn s{victim.name[-1]}: final eval" in err and "(attempt 2, resumed from step" in err
    assert rows(suite_dir / "results.csv") == rows(tmp_path / "local" / "small" / "results.csv")
    assert len(rows(suite_dir / "results.csv")) == 4
    for run in results:
        for name in ("progress.csv", "evaluations.csv"):
            assert rows(suite_dir / run / name) == rows(tmp_path / "local" / "small" / run / name), (run, name)
    assert rows(suite_dir / "summary.csv") == rows(tmp_path / "local" / "small" / "summary.csv")
    assert "| CartPole-v1 | dqn | 8,000 |" in (suite_dir / "results.md").read_text()
    assert (suite_dir / "curves.png").is_file()
    assert not list(suite_dir.glob(".qzoo-ray-*"))  # the shared-storage marker is gone


def test_a_run_that_fails_for_its_own_reason_is_reported_once_not_retried(cluster, suite_file, tmp_path):
    r = qzoo(["bench", "diverge", "--suite-file", suite_file, "--seeds", "1", "--ray", cluster.address,
              "--bench-dir", tmp_path])
    assert r.returncode == 1, r.stderr
    failures = [line for line in r.stderr.splitlines() if line.startswith("qzoo bench: failed:")]
    assert len(failures) == 1, r.stderr
    # caught at a log row (loss or Q non-finite) or at the step-300 checkpoint (weights non-finite), whichever the
    # CPU's arithmetic reaches first (a Zen 4 EPYC's weights overflow before step 300, a Sapphire Rapids' after)
    assert failures[0].startswith("qzoo bench: failed: qzoo/Corridor-v0 dqn seed 0: TrainingDiverged: ")
    assert "became non-finite" in failures[0] and "try a lower learning_rate" in failures[0]
    attempt = json.loads((tmp_path / "diverge/qzoo/Corridor-v0/dqn_s0" / ATTEMPT).read_text())
    assert attempt["attempt"] == 1  # not retried


def test_bench_on_ray_stops_cleanly_on_sigterm_and_leaves_the_run_unfinished(cluster, suite_file, tmp_path):
    import signal

    proc = subprocess.Popen(QZOO + ["bench", "long", "--suite-file", str(suite_file), "--seeds", "1", "--ray",
                                    cluster.address, "--bench-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    run_dir = tmp_path / "long" / "CartPole-v1" / "dqn_s0"
    deadline = time.monotonic() + 120
    while not (run_dir / "progress.csv").is_file() or (run_dir / "progress.csv").stat().st_size < 200:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; rerun the same command" in err
    assert list((run_dir / "checkpoints").glob("step_*.pt"))  # the task stopped cleanly and checkpointed
    assert not (run_dir / "result.json").exists() and not (run_dir / "model.pt").exists()


def test_tune_on_ray_two_workers_lose_and_duplicate_no_trial(cluster, tmp_path):
    import optuna
    from optuna.trial import TrialState

    r = qzoo(["tune", "qzoo/Corridor-v0", "--ray", cluster.address, "--workers", "2", "--n-trials", "6",
              "--n-timesteps", "600", "--n-evals", "2", "--eval-episodes", "2", "--sampler", "random",
              "--sampler-seed", "3", "--tunes-dir", tmp_path, "--study-name", "small"])
    assert r.returncode == 0, r.stderr
    study_dir = tmp_path / "qzoo/Corridor-v0/small"
    trials = optuna.load_study(study_name="small", storage=f"sqlite:///{study_dir}/study.db").trials
    # workers stop starting trials at 6 finished + running; both may pass that check at once (one extra)
    assert len(trials) in (6, 7) and all(t.state == TrialState.COMPLETE for t in trials)
    assert [t.number for t in trials] == list(range(len(trials)))
    for t in trials:  # each trial started exactly once
        assert r.stderr.count(f"] trial {t.number} started: ") == 1, t.number
    assert len({t.user_attrs["worker"] for t in trials}) == 2, "both Ray workers ran trials"
    assert {row["number"] for row in csv.DictReader(open(study_dir / "trials.csv"))} == {str(t.number)
                                                                                          for t in trials}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_input_is_one_line_and_exit_2(cluster, suite_file, tmp_path):
    bench = ["bench", "small", "--suite-file", suite_file, "--seeds", "1", "--bench-dir", tmp_path / "b"]
    port = _closed_port()
    r = qzoo(bench + ["--ray", f"127.0.0.1:{port}"])
    assert r.returncode == 2 and r.stderr.strip() == (
        f"qzoo bench: error: cannot reach a Ray cluster at 127.0.0.1:{port} (Connection refused); give the head "
        "node's address (`ray start --head` prints it), or --ray alone for a local instance")
    r = qzoo(["tune", "qzoo/Corridor-v0", "--ray", f"127.0.0.1:{port}", "--tunes-dir", tmp_path / "t"])
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "cannot reach a Ray cluster" in r.stderr

    r = qzoo(bench + ["--ray", cluster.address, "--set", "torch_threads=3"])  # the nodes have 2 CPUs at most
    assert r.returncode == 2 and r.stderr.strip() == (
        "qzoo bench: error: run CartPole-v1 dqn seed 0 needs 3 CPUs (its torch_threads), but the largest node of the "
        "Ray cluster has 2; lower it (--set torch_threads=N) or add a bigger node")

    r = qzoo(bench + ["--ray", cluster.address, "--jobs", "2"])
    assert r.returncode == 2 and "with --ray the cluster's CPUs set how many runs go at once" in r.stderr

    no_ray = tmp_path / "no_ray" / "ray"  # an environment without the extra: `import ray` fails
    no_ray.mkdir(parents=True)
    (no_ray / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'ray'\", name='ray')\n")
    env = {**ENV, "PYTHONPATH": f"{no_ray.parent}{os.pathsep}{os.getcwd()}"}
    r = qzoo(bench + ["--ray"], env=env)
    assert r.returncode == 2 and r.stderr.strip() == (
        "qzoo bench: error: --ray needs Ray, which is not installed in this environment: pip install 'qzoo[ray]'")
    r = qzoo(["tune", "qzoo/Corridor-v0", "--ray", "--tunes-dir", tmp_path / "t"], env=env)
    assert r.returncode == 2 and r.stderr.strip() == (
        "qzoo tune: error: --ray needs Ray, which is not installed in this environment: pip install 'qzoo[ray]'")
    assert not (tmp_path / "b").exists() and not (tmp_path / "t").exists()  # nothing was created


def test_the_shared_storage_check_names_what_a_node_cannot_see(tmp_path):
    """What a node that does not share the bench directory finds (each case is what that node would see)."""
    from qzoo.scaleout import marker_problem

    marker = tmp_path / "bench" / ".qzoo-ray-abc"
    assert marker_problem(str(marker), "token") == f"'{tmp_path / 'bench'}' does not exist there"
    marker.parent.mkdir()
    assert marker_problem(str(marker), "token") == (f"'{tmp_path / 'bench'}' there is another directory (the driver's "
                                                    "marker file is not in it)")
    marker.write_text("another token")
    assert "the driver's marker file holds another token" in marker_problem(str(marker), "token")
    marker.write_text("token")
    assert marker_problem(str(marker), "token") is None
    assert sorted(p.name for p in marker.parent.iterdir()) == [".qzoo-ray-abc"]  # the probe file is gone
