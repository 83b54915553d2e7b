cd /tmp/t17d
export OMP_WAIT_POLICY=PASSIVE
exec taskset -c 0 nice -n 10 /work/wt/presets4/.venv/bin/qzoo tune LunarLander-v3 --n-trials 30 --seeds-per-trial 4 --seed 200 \
  --objective min --prune-below 200 --pruner none --n-evals 1 --eval-episodes 10 --space space.yml --space-only \
  --startup-trials 4 --sampler-seed 17 --workers 1 --timeout 1800 --set torch_threads=1 --tunes-dir /tmp/t17d/tunes \
  --study-name ll17d \
  --enqueue "learning_rate=1.05e-3,learning_rate_schedule=linear,n_step=3,one_minus_gamma=0.01,buffer_size=50000,target_update_interval=1000,exploration_fraction=0.12,exploration_final_eps=0.1" \
  --enqueue "learning_rate=1.05e-3,learning_rate_schedule=linear,n_step=3,one_minus_gamma=0.01,buffer_size=100000,target_update_interval=1000,exploration_fraction=0.12,exploration_final_eps=0.02" \
  --enqueue "learning_rate=1.05e-3,learning_rate_schedule=linear,n_step=3,one_minus_gamma=0.005,buffer_size=100000,target_update_interval=1000,exploration_fraction=0.12,exploration_final_eps=0.02" \
  --enqueue "learning_rate=1.05e-3,learning_rate_schedule=linear,n_step=5,one_minus_gamma=0.01,buffer_size=100000,target_update_interval=1000,exploration_fraction=0.2,exploration_final_eps=0.05"

# 23:58 UTC: trial 3 (n_step 5, learning_starts 0) stopped the command with 'cannot sample from an empty replay buffer'
# (fixed in qzoo/trainer.py, commit 6e85e2c); resumed at 00:03 with the same command and --timeout 240 (command2.sh): trial 4
# (sampled by TPE) ran; trial 3 was marked failed on resume (stale heartbeat) and not run again (--timeout).
