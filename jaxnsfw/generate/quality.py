"""How far an edited image is from its original: PSNR and SSIM on uint8 RGB, 0..255."""

from __future__ import annotations

import math

import numpy as np

# dm-pix's SSIM is Wang et al. (2004) as published: an 11x11 Gaussian window, sigma 1.5, on each
# channel, averaged; an image smaller than the window has no SSIM.
SSIM_WINDOW = 11


def psnr(original: np.ndarray, edited: np.ndarray) -> float | None:
    """Peak signal-to-noise ratio in dB; None for identical images (it is infinite, and JSON has
    no infinity)."""
    mse = float(np.mean((original.astype(np.float64) - edited.astype(np.float64)) ** 2))
    return None if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def ssim(original: np.ndarray, edited: np.ndarray) -> float | None:
    """Structural similarity (1 for identical images); None below the 11x11 window."""
    if min(original.shape[:2]) < SSIM_WINDOW:
        return None
    import dm_pix  # imported here: loading it (and chex) costs a second, and only the final image needs it

    return float(dm_pix.ssim(original.astype(np.float32), edited.astype(np.float32), max_val=255.0))
