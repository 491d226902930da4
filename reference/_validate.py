"""Input checks shared by the reference package; every error says how to fix it."""

from __future__ import annotations

import math

import numpy as np


def finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    return value


def positive(name: str, value: float) -> float:
    value = finite(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}; pass a positive number.")
    return value


def logsnr_range(logsnr_min: float, logsnr_max: float) -> tuple[float, float]:
    """Check `logsnr_min < logsnr_max`, both finite (t=0 is `logsnr_max`)."""
    lo, hi = finite("logsnr_min", logsnr_min), finite("logsnr_max", logsnr_max)
    if not lo < hi:
        raise ValueError(
            f"Empty or reversed log-SNR range: logsnr_min={lo!r} must be < logsnr_max={hi!r}. "
            "logsnr_max is the least-noise end (t=0); swap the two values if they are reversed."
        )
    return lo, hi


def same_shape(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    if np.shape(a) != np.shape(b):
        raise ValueError(
            f"{name_a} has shape {np.shape(a)} but {name_b} has shape {np.shape(b)}; "
            f"they must match (draw {name_b} with the shape of {name_a})."
        )
