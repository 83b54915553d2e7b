"""qzoo: the deep Q-learning toolkit."""

import os

# OpenMP threads that spin while waiting for work take the cores from the envs, the actor thread and anything else
# on the machine: with torch's two threads on a busy 2-core machine a Nature-CNN update took 266-373 ms with the
# default policy, 90-135 ms with PASSIVE (BENCHMARKS.md, issue 14). The policy is read once, when torch loads, so
# it is set here, before any qzoo module imports torch; a value already in the environment wins.
#: the policy the user gave (None: qzoo chose PASSIVE); peers compared with qzoo run at their own defaults.
USER_OMP_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
