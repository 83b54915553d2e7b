# Adds knowledge-based trials to the running study, read against space.yml as --enqueue reads them (the same as
# --enqueue on a resume): the worker runs waiting trials before sampled ones.
import sys

import optuna

from qzoo.tuning import load_space, parse_enqueue

study = optuna.load_study(study_name="mc17c", storage="sqlite:////tmp/t17c/tunes/MountainCar-v0/mc17c/study.db")
for params in parse_enqueue(sys.argv[1:], load_space("dqn", "/tmp/t17c/space.yml", True)):
    study.enqueue_trial(params, skip_if_exists=True)
    print("enqueued", params)
