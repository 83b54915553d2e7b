"""Image augmentation of sampled batches: DrQ's random shift (Kostrikov, Yarats & Fergus 2021).

    random_shift(obs (B, C, H, W), pad, rng)  ->  each sample padded by ``pad`` pixels on every side, replicating
                                                 the edge pixels, and cropped back to H x W at a random offset

Design decisions:
- The shift (dy, dx) is drawn per sample, uniformly from [-pad, pad] in each axis ((2 pad + 1)^2 offsets, as
  DrQ's pad-then-random-crop gives). All channels of a sample (its stacked frames) share one shift, so the
  frames of a stack stay aligned. Dopamine's DrQ(ε) draws offsets in [-pad, pad - 1] (``randint``'s exclusive
  bound) and adds an intensity jitter; qzoo keeps DrQ's symmetric shift and no intensity change.
- The buffer applies it at sampling, to s and s' with independent shifts (as DrQ and Dopamine do), with its own
  seeded RNG (saved in checkpoints): acting and evaluation never see augmented frames.
- Works on the storage dtype (uint8 stays uint8): a shift only moves pixels, no value is created.
"""

from __future__ import annotations

import numpy as np

AUGMENTATIONS = ("none", "random_shift")


def random_shift(obs: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """``obs`` (B, C, H, W) shifted per sample by (dy, dx) in [-pad, pad]^2, the uncovered border filled by edge
    replication: out[b, :, i, j] = obs[b, :, clip(i + dy_b, 0, H-1), clip(j + dx_b, 0, W-1)]."""
    if obs.ndim != 4:
        raise ValueError(f"random_shift expects a batch of images (B, C, H, W), got shape {obs.shape}")
    b, _, h, w = obs.shape
    padded = np.pad(obs, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="edge")
    top = rng.integers(0, 2 * pad + 1, size=b)  # crop origin in the padded image: shift = origin - pad
    left = rng.integers(0, 2 * pad + 1, size=b)
    out = np.empty_like(obs)
    for k in range(b):  # B slice copies: cheaper than a fancy-index gather of B*C*H*W elements
        out[k] = padded[k, :, top[k]:top[k] + h, left[k]:left[k] + w]
    return out


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
    raise ValueError(f"unknown augmentation {name!r}; allowed: {', '.join(AUGMENTATIONS)}")
