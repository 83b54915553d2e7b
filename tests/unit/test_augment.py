"""DrQ's random shift (qzoo/replay/augment.py) and where it applies: sampled batches only, seeded."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from qzoo.agent import build_agent
from qzoo.config import ConfigError
from qzoo.envs import check_env
from qzoo.replay import ReplayBuffer, make_replay
from qzoo.replay.augment import make_augment, random_shift, shift_intensity
from qzoo.replay.samplers import UniformSampler
from qzoo.replay.storage import TransitionStorage
from qzoo.resolve import resolve


class FixedOffsets:
    """An rng whose integers() returns given crop origins (top first, then left) and whose standard_normal()
    returns given normal draws; it checks the bounds asked for."""

    def __init__(self, *arrays, normals=None, high=None):
        self.arrays = list(arrays)
        self.normals, self.high = normals, high

    def integers(self, low, high, size):
        out = np.asarray(self.arrays.pop(0))
        assert out.shape == (size,) and ((low <= out) & (out < high)).all()
        assert self.high is None or high == self.high
        return out

    def standard_normal(self, size):
        assert len(self.normals) == size
        return np.asarray(self.normals, dtype=np.float64)


def shifted(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Reference: out[i, j] = img[clip(i + dy), clip(j + dx)] (edge replication), by plain loops."""
    h, w = img.shape[-2:]
    out = np.empty_like(img)
    for i in range(h):
        for j in range(w):
            out[..., i, j] = img[..., min(max(i + dy, 0), h - 1), min(max(j + dx, 0), w - 1)]
    return out


def test_hand_checked_shift_up_and_right_with_edge_replication():
    img = np.arange(16, dtype=np.uint8).reshape(1, 1, 4, 4)
    # pad 1; crop origin top 0 (dy = -1: content moves down), left 2 (dx = +1: content moves left)
    out = random_shift(img, 1, FixedOffsets([0], [2]))
    expected = [[1, 2, 3, 3],
                [1, 2, 3, 3],
                [5, 6, 7, 7],
                [9, 10, 11, 11]]
    assert out[0, 0].tolist() == expected
    # origin (pad, pad) is no shift at all
    assert np.array_equal(random_shift(img, 1, FixedOffsets([1], [1])), img)


def test_shape_dtype_and_values_are_kept():
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, size=(32, 4, 84, 84), dtype=np.uint8)
    out = random_shift(obs, 4, np.random.default_rng(1))
    assert out.shape == obs.shape and out.dtype == np.uint8
    for b in range(32):  # a shift only moves pixels: every output value is one of that sample's input values
        assert np.isin(out[b], obs[b]).all()
    assert not np.array_equal(out, obs)  # 1 in 81 per sample is unshifted; 32 samples are not all


def test_every_shift_in_range_occurs_per_sample_and_frames_of_a_stack_move_together():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, size=(12, 12), dtype=np.uint8)
    stack = np.stack([base, 255 - base])  # two frames that must stay aligned
    obs = np.repeat(stack[None], 2000, axis=0)
    out = random_shift(obs, 2, np.random.default_rng(4))
    candidates = {(dy, dx): shifted(stack, dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}
    seen = set()
    for b in range(len(out)):
        match = [s for s, c in candidates.items() if np.array_equal(out[b], c)]
        assert match, f"sample {b} is no shift of its input within +-2 pixels"
        seen.add(match[0])
    assert seen == set(candidates)  # all 25 shifts, none outside [-2, 2]


def test_same_seed_same_shifts_other_seed_other_shifts():
    obs = np.random.default_rng(0).integers(0, 256, size=(16, 4, 20, 20), dtype=np.uint8)
    a = random_shift(obs, 4, np.random.default_rng(7))
    b = random_shift(obs, 4, np.random.default_rng(7))
    c = random_shift(obs, 4, np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def image_buffer(seed, augment):
    storage = TransitionStorage(64, (2, 12, 12), np.uint8, gamma=0.99)
    buf = ReplayBuffer(storage, UniformSampler(), seed=seed, augment=augment)
    rng = np.random.default_rng(123)
    for _ in range(40):
        s, s2 = (rng.integers(0, 256, size=(1, 2, 12, 12), dtype=np.uint8) for _ in range(2))
        buf.add(s, np.array([0]), np.array([1.0]), s2, np.array([False]), np.array([False]))
    return buf


def test_shift_intensity_by_hand():
    """Dopamine's crop origin is randint(0, 2 pad): exclusive bound, so it asks for 2 pad origins, not 2 pad + 1;
    each sample's pixels are then multiplied by 1 + 0.05 clip(z, -2, 2)."""
    img = np.arange(16, dtype=np.uint8).reshape(1, 1, 4, 4)
    obs = np.concatenate([img, img])
    # pad 1: origins drawn from [0, 2); sample 0 origin (0, 1): dy = -1, dx = 0; sample 1 origin (1, 0): dy 0, dx -1
    out = shift_intensity(obs, 1, FixedOffsets([0, 1], [1, 0], normals=[0.5, -3.0], high=2))
    assert out.dtype == np.float32 and out.shape == obs.shape
    shift0 = [[0, 1, 2, 3], [0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    shift1 = [[0, 0, 1, 2], [4, 4, 5, 6], [8, 8, 9, 10], [12, 12, 13, 14]]
    # z = 0.5 -> factor 1.025; z = -3 is clipped to -2 -> factor 0.9
    np.testing.assert_allclose(out[0, 0], np.array(shift0) * 1.025, rtol=1e-6)
    np.testing.assert_allclose(out[1, 0], np.array(shift1) * 0.9, rtol=1e-6)


def test_shift_intensity_offsets_and_factors_in_range():
    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, size=(12, 12), dtype=np.uint8)
    stack = np.stack([base, 255 - base])
    obs = np.repeat(stack[None], 3000, axis=0)
    out = shift_intensity(obs, 2, np.random.default_rng(6))
    candidates = {(dy, dx): shifted(stack, dy, dx).astype(np.float64) for dy in range(-2, 3) for dx in range(-2, 3)}
    seen, factors = set(), []
    for b in range(len(out)):
        found = []
        for offset, c in candidates.items():
            factor = out[b].sum(dtype=np.float64) / c.sum()  # one factor for all of the sample's pixels
            if np.allclose(out[b], factor * c, rtol=1e-6, atol=1e-4):
                found.append((offset, factor))
        assert found, f"sample {b} is no scaled shift of its input within +-2 pixels"
        seen.add(found[0][0])
        factors.append(found[0][1])
    # Dopamine's offsets: [-2, 1] in each axis, all 16 of them, never +2
    assert seen == {(dy, dx) for dy in range(-2, 2) for dx in range(-2, 2)}
    factors = np.array(factors)
    assert factors.min() >= 0.9 - 1e-6 and factors.max() <= 1.1 + 1e-6
    # 1 + 0.05 clip(z, -2, 2): mean 1, std 0.05 * 0.959 = 0.048 (Var clip(z) = 0.9545 - 4 phi(2) + 4 * 0.0455)
    assert abs(factors.mean() - 1.0) < 0.004 and 0.0455 < factors.std() < 0.0505
    assert 30 < np.isclose(factors, 0.9, atol=1e-6).sum() < 110  # z < -2: 2.3% of 3000 draws land on the clip


def test_shift_intensity_through_the_agent_bf16_and_float32():
    """The float32 batch goes through the update as uint8 frames do; the frames of acting stay raw."""
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    for bf16 in ("false", "true"):
        config = resolve("ALE/Pong-v5", "drq_eps", sets=[f"bf16={bf16}", "augmentation=shift_intensity",
                                                          "learning_starts=0"])
        replay = make_replay(config, space)
        frames = np.random.default_rng(0).integers(0, 256, size=(44, 84, 84), dtype=np.uint8)
        for i in range(40):  # sliding stacks, as the Atari pipeline gives them (frame storage checks it)
            replay.add(frames[None, i:i + 4], np.array([1]), np.array([1.0]), frames[None, i + 1:i + 5],
                       np.array([False]), np.array([False]))
        batch = replay.sample(8)
        assert batch.obs_tm1.dtype == np.float32 and batch.obs_t.dtype == np.float32
        torch.manual_seed(0)
        agent = build_agent(config, space, 6, torch.device("cpu"))
        before = [p.detach().clone() for p in agent.q_net.parameters()]
        agent.learn(replay, 1, 8, 100)
        assert agent.updates == 1
        assert all(torch.isfinite(p).all() for p in agent.q_net.parameters())
        assert any(not torch.equal(a, b) for a, b in zip(before, agent.q_net.parameters(), strict=True))


def test_buffer_shifts_s_and_next_s_independently_and_is_seeded():
    plain = image_buffer(0, None).sample(200)
    aug = image_buffer(0, make_augment("random_shift", 2)).sample(200)
    assert np.array_equal(plain.indices, aug.indices)  # same rows: the shifts are drawn after the rows
    storage = image_buffer(0, None).storage
    assert np.array_equal(plain.obs_tm1, storage.obs_tm1[plain.indices])  # off: the stored frames exactly
    offsets = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
    candidates = {name: {row: [shifted(frames[row], dy, dx) for dy, dx in offsets] for row in set(aug.indices)}
                  for name, frames in (("s", storage.obs_tm1), ("s2", storage.obs_t))}
    shifts_s, shifts_s2 = [], []
    for k in range(200):
        for name, got, shifts in (("s", aug.obs_tm1, shifts_s), ("s2", aug.obs_t, shifts_s2)):
            options = zip(offsets, candidates[name][aug.indices[k]], strict=True)
            found = [o for o, c in options if np.array_equal(got[k], c)]
            assert found
            shifts.append(found[0])
    assert shifts_s != shifts_s2  # s and s' draw their own shifts
    again = image_buffer(0, make_augment("random_shift", 2)).sample(200)
    assert np.array_equal(again.obs_tm1, aug.obs_tm1) and np.array_equal(again.obs_t, aug.obs_t)


def test_drq_eps_preset_turns_it_on_for_atari_and_flat_observations_are_refused():
    config = resolve("ALE/Pong-v5", "drq_eps")
    assert (config.augmentation, config.augmentation_pad) == ("shift_intensity", 4)  # Dopamine's
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert make_replay(config, space).augment is not None
    assert make_replay(config.replace(augmentation="none"), space).augment is None
    flat = resolve("CartPole-v1", "dqn", sets=["augmentation=random_shift"])
    with pytest.raises(ConfigError, match="needs image observations"):
        make_replay(flat, gym.spaces.Box(-1.0, 1.0, (4,), np.float32))
    with pytest.raises(ConfigError, match="needs image observations"):
        check_env(flat)  # refused with the env checks, before a run directory exists
    with pytest.raises(ConfigError, match="augmentation"):
        resolve("ALE/Pong-v5", "dqn", sets=["augmentation=crop"])


def test_acting_and_evaluation_do_not_see_the_augmentation():
    """The agent acts (and evaluate() plays) through agent.act on raw frames: two agents that differ only in the
    augmentation setting pick the same actions with the same Q-values."""
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    on = resolve("ALE/Pong-v5", "drq_eps", sets=["bf16=false"])
    agents = []
    for config in (on, on.replace(augmentation="none")):
        torch.manual_seed(0)
        agents.append(build_agent(config, space, 6, torch.device("cpu")))
    obs = np.random.default_rng(0).integers(0, 256, size=(3, 4, 84, 84), dtype=np.uint8)
    with torch.no_grad():
        q = [a.q_net(torch.as_tensor(obs)) for a in agents]
    assert torch.equal(q[0], q[1])
    acts = [a.act(obs, 0.0, np.random.default_rng(0)) for a in agents]
    assert np.array_equal(acts[0], acts[1])
    assert np.array_equal(acts[0], q[0].argmax(1).numpy())  # greedy on the unshifted frames
