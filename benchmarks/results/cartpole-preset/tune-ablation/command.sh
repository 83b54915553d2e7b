cd /tmp/t17b
export OMP_WAIT_POLICY=PASSIVE
exec taskset -c 0 nice -n 10 /work/wt/presets3/.venv/bin/qzoo tune CartPole-v1 --n-trials 40 --seeds-per-trial 8 --seed 300 \
  --objective min --n-evals 1 --eval-episodes 10 --space space.yml --space-only --startup-trials 6 --sampler-seed 17 \
  --workers 1 --timeout 2100 --set torch_threads=1 --tunes-dir /tmp/t17b/tunes --study-name cp17b2 \
  --enqueue "learning_rate=4e-3,learning_rate_schedule=linear,n_step=3,target_update_interval=256,train_freq=256,subsample_steps=4,exploration_fraction=0.16,exploration_final_eps=0.04,one_minus_gamma=0.01,tau=0.5,batch_size=128,net_arch=[128, 128],dueling=false" \
  --enqueue "learning_rate=4e-3,learning_rate_schedule=linear,n_step=3,target_update_interval=256,train_freq=256,subsample_steps=4,exploration_fraction=0.16,exploration_final_eps=0.04,one_minus_gamma=0.01,tau=1.0,batch_size=128,net_arch=[128, 128],dueling=true" \
  --enqueue "learning_rate=4e-3,learning_rate_schedule=linear,n_step=3,target_update_interval=256,train_freq=256,subsample_steps=4,exploration_fraction=0.16,exploration_final_eps=0.04,one_minus_gamma=0.01,tau=0.5,batch_size=64,net_arch=small,dueling=true"
