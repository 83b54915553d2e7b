cd /tmp/t17b
export OMP_WAIT_POLICY=PASSIVE
exec taskset -c 0 nice -n 10 /work/wt/presets3/.venv/bin/qzoo bench classic --envs CartPole-v1 --seeds 10 --jobs 1 \
  --bench-dir /tmp/t17b/benchB --set torch_threads=1 --set learning_rate=0.004 --set tau=0.5 --set batch_size=128 \
  --set "net_arch=[128, 128]" --set dueling=true
