"""Image augmentation of sampled batches: DrQ's random shift (Kostrikov, Yarats & Fergus 2021), and Dopamine's
version of it with an intensity jitter (the DrQ(ε) whose Atari-100k scores are published).

    random_shift(obs (B, C, H, W), pad, rng)     ->  each sample padded by ``pad`` pixels on every side, replicating
                                                    the edge pixels, and cropped back to H x W at a random offset
    shift_intensity(obs (B, C, H, W), pad, rng)  ->  Dopamine's ``drq_image_augmentation`` (labs/atari_100k): the same
                                                    crop with offsets in [-pad, pad - 1], then each sample's frames
                                                    times 1 + 0.05 clip(N(0, 1), -2, 2); float32 out

Design decisions:
- The shift (dy, dx) is drawn per sample, uniformly from [-pad, pad] in each axis ((2 pad + 1)^2 offsets, as
  DrQ's pad-then-random-crop gives). All channels of a sample (its stacked frames) share one shift, so the
  frames of a stack stay aligned. Dopamine's DrQ(ε) draws crop origins with ``jax.random.randint(0, 2 pad)``,
  whose bound is exclusive: offsets in [-pad, pad - 1]. ``shift_intensity`` keeps that asymmetry (it is what the
  published runs did); ``random_shift`` keeps DrQ's symmetric shift.
- The intensity jitter (Schwarzer et al. 2021's, as Dopamine applies it to frames scaled to [0, 1]) multiplies all
  of a sample's pixels by one factor. The network scales frames by 1/255 itself, so the factor is applied to the
  0..255 values: the same product. The result is float32 (the jittered values are not integers); the replay
  still stores uint8. Under bf16 the network rounds these values to bfloat16 (8 significant bits: ~0.4% of a
  pixel's value, against the jitter's 5% standard deviation).
- The buffer applies it at sampling, to s and s' with independent shifts (as DrQ and Dopamine do), with its own
  seeded RNG (saved in checkpoints): acting and evaluation never see augmented frames.
- ``random_shift`` works on the storage dtype (uint8 stays uint8): a shift only moves pixels, no value is created.
"""

from __future__ import annotations

import numpy as np

AUGMENTATIONS = ("none", "random_shift", "shift_intensity")
INTENSITY_SCALE = 0.05  # Dopamine's _intensity_aug(scale=0.05)


def random_shift(obs: np.ndarray, pad: int, rng: np.random.Generator, *, symmetric: bool = True) -> np.ndarray:
    """``obs`` (B, C, H, W) shifted per sample by (dy, dx) in [-pad, pad]^2 ([-pad, pad - 1]^2 when not
    ``symmetric``), the uncovered border filled by edge replication:
    out[b, :, i, j] = obs[b, :, clip(i + dy_b, 0, H-1), clip(j + dx_b, 0, W-1)]."""
    if obs.ndim != 4:
        raise ValueError(f"random_shift expects a batch of images (B, C, H, W), got shape {obs.shape}")
    b, _, h, w = obs.shape
    padded = np.pad(obs, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="edge")
    origins = 2 * pad + 1 if symmetric else 2 * pad
    top = rng.integers(0, origins, size=b)  # crop origin in the padded image: shift = origin - pad
    left = rng.integers(0, origins, size=b)
    out = np.empty_like(obs)
    for k in range(b):  # B slice copies: cheaper than a fancy-index gather of B*C*H*W elements
        out[k] = padded[k, :, top[k]:top[k] + h, left[k]:left[k] + w]
    return out


def shift_intensity(obs: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """Dopamine's DrQ augmentation: :func:`random_shift` with offsets in [-pad, pad - 1], then sample b's frames
    times f_b = 1 + 0.05 clip(z_b, -2, 2), z_b ~ N(0, 1) (f in [0.9, 1.1]). float32 (B, C, H, W)."""
    shifted = random_shift(obs, pad, rng, symmetric=False)
    factor = 1.0 + INTENSITY_SCALE * np.clip(rng.standard_normal(len(obs)), -2.0, 2.0)
    return np.multiply(shifted, factor.astype(np.float32)[:, None, None, None], dtype=np.float32)


def augmentation_problem(config, obs_shape: tuple) -> str | None:
    """Why ``config.augmentation`` cannot apply to observations of ``obs_shape`` (one line), or None."""
    if config.augmentation == "none" or (len(obs_shape) == 3 and min(obs_shape[1:]) > 2 * config.augmentation_pad):
        return None
    return (f"setting 'augmentation' {config.augmentation!r} needs image observations (channels, height, width) "
            f"larger than 2 * augmentation_pad; {config.env_id} has shape {tuple(obs_shape)}")


def make_augment(name: str, pad: int):
    """The augmentation named by the ``augmentation`` setting, as ``f(obs, rng) -> obs``; None for 'none'."""
    if name == "none":
        return None
    if name == "random_shift":
        return lambda obs, rng: random_shift(obs, pad, rng)
    if name == "shift_intensity":
        return lambda obs, rng: shift_intensity(obs, pad, rng)
    raise ValueError(f"unknown augmentation {name!r}; allowed: {', '.join(AUGMENTATIONS)}")
