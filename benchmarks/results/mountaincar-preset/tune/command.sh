cd /tmp/t17c
export OMP_WAIT_POLICY=PASSIVE
exec taskset -c 0 nice -n 10 /work/wt/presets4/.venv/bin/qzoo tune MountainCar-v0 --n-trials 30 --seeds-per-trial 5 --seed 200 \
  --objective min --prune-below -120 --pruner none --n-evals 1 --eval-episodes 10 --space space.yml --space-only \
  --startup-trials 4 --sampler-seed 17 --workers 1 --timeout 3600 --set torch_threads=1 --tunes-dir /tmp/t17c/tunes \
  --study-name mc17c \
  --enqueue "learning_rate=4e-3,learning_rate_schedule=constant,n_step=1,one_minus_gamma=0.02,double=false,buffer_size=10000,target_update_interval=600,exploration_fraction=0.2,exploration_final_eps=0.07" \
  --enqueue "learning_rate=4e-3,learning_rate_schedule=linear,n_step=1,one_minus_gamma=0.02,double=false,buffer_size=10000,target_update_interval=600,exploration_fraction=0.2,exploration_final_eps=0.07" \
  --enqueue "learning_rate=4e-3,learning_rate_schedule=linear,n_step=3,one_minus_gamma=0.01,double=false,buffer_size=50000,target_update_interval=600,exploration_fraction=0.2,exploration_final_eps=0.07" \
  --enqueue "learning_rate=4e-3,learning_rate_schedule=linear,n_step=3,one_minus_gamma=0.02,double=true,buffer_size=50000,target_update_interval=600,exploration_fraction=0.3,exploration_final_eps=0.02"

# 23:23 UTC, while trial 3 ran: two more knowledge-based trials queued into the running study (run as trials 4, 5):
#   python enqueue.py "learning_rate=4e-3,learning_rate_schedule=constant,n_step=1,one_minus_gamma=0.02,double=false,buffer_size=50000,target_update_interval=600,exploration_fraction=0.2,exploration_final_eps=0.07" \
#     "learning_rate=2e-3,learning_rate_schedule=constant,n_step=3,one_minus_gamma=0.02,double=false,buffer_size=50000,target_update_interval=600,exploration_fraction=0.3,exploration_final_eps=0.05"
# 23:34 UTC: stopped with SIGINT (trial 5 recorded as failed: interrupted) to spend the core on seeds 0-9
