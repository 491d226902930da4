r"""Prediction targets and their exact factors relative to the ε-loss (SPEC §0).

For each target $y$, $\|y - \hat y\|^2 = f_y(\lambda)\,\|\epsilon - \hat\epsilon\|^2$:

| target | $f_y(\lambda)$ |
|---|---|
| `"eps"` | $1$ |
| `"x"` | $e^{-\lambda}$ |
| `"v"` ($v = \alpha\epsilon - \sigma x$) | $1 + e^{-\lambda}$ |
| `"F"` (EDM, $x = c_{\mathrm{skip}} z_{\mathrm{edm}} + c_{\mathrm{out}} F$) | $e^{-\lambda}/c_{\mathrm{out}}^2 = (e^{-\lambda} + \sigma_d^2)/\sigma_d^2$ |
| `"u"` (flow velocity $\epsilon - x$, $\alpha = 1-t$, $\sigma = t$) | $(1 + e^{-\lambda/2})^2$ |
"""

from __future__ import annotations

import numpy as np

TARGETS = ("eps", "x", "v", "F", "u")


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise ValueError(f"Unknown target {target!r}; choose one of {TARGETS}.")
    return target


def target_factor(target: str, logsnr, sigma_data: float = 0.5):
    r"""$f_{\mathrm{target}}(\lambda)$ with $\|\mathrm{target} - \widehat{\mathrm{target}}\|^2 = f\,\|\epsilon - \hat\epsilon\|^2$."""
    check_target(target)
    logsnr = np.asarray(logsnr, dtype=np.float64)
    if target == "eps":
        return np.ones_like(logsnr)
    if target == "x":
        return np.exp(-logsnr)
    if target == "v":
        return 1.0 + np.exp(-logsnr)
    if target == "F":
        return np.exp(-logsnr) / sigma_data**2 + 1.0
    return (1.0 + np.exp(-0.5 * logsnr)) ** 2
