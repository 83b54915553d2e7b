"""The stable-baselines3 peer now lives in the package (qzoo/bench/peer.py, used by `qzoo bench --peer sb3`);
this shim keeps the benchmark scripts' imports working."""

from qzoo.bench.peer import ensure_sb3, run_sb3  # noqa: F401
