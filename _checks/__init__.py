"""Argument checks shared by `reference` and `eqx_impl`, so both raise the same errors.

Plain Python and NumPy only (no JAX, no SciPy): each package imports this module and
computes everything else itself. Every check returns the normalised value (a Python
`float`/`int`, or float64 arrays) and raises a `ValueError` that names the value and says
what to do.
"""

from __future__ import annotations

import math
import numbers
import operator

import numpy as np

# --- scalars and ranges ----------------------------------------------------------------------


def finite(name: str, value: float) -> float:
    """`value` as a finite Python float. **Returns:** `float(value)`."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    return value


def positive(name: str, value: float) -> float:
    """`value` as a finite float > 0. **Returns:** `float(value)`."""
    value = finite(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}; pass a positive number.")
    return value


def logsnr_range(logsnr_min: float, logsnr_max: float) -> tuple[float, float]:
    """Check `logsnr_min < logsnr_max`, both finite (t=0 is `logsnr_max`). **Returns:** `(lo, hi)`."""
    lo, hi = finite("logsnr_min", logsnr_min), finite("logsnr_max", logsnr_max)
    if not lo < hi:
        raise ValueError(
            f"Empty or reversed log-SNR range: logsnr_min={lo!r} must be < logsnr_max={hi!r}. "
            "logsnr_max is the least-noise end (t=0); swap the two values if they are reversed."
        )
    return lo, hi


def same_shape(name_a: str, a, name_b: str, b) -> None:
    """Raise unless `a` and `b` have the same shape."""
    if np.shape(a) != np.shape(b):
        raise ValueError(
            f"{name_a} has shape {np.shape(a)} but {name_b} has shape {np.shape(b)}; "
            f"they must match (draw {name_b} with the shape of {name_a})."
        )


def positive_int(name: str, value, minimum: int = 1, meaning: str = "") -> int:
    """`value` as an `int` that is at least `minimum`. **Returns:** `int(value)`."""
    integral = isinstance(value, numbers.Integral | np.integer) and not isinstance(value, bool)
    if not (integral and int(value) >= minimum):
        raise ValueError(f"{name} must be an integer >= {minimum}{meaning}, got {value!r}.")
    return int(value)


# --- prediction targets (SPEC §0) -------------------------------------------------------------

TARGETS = ("eps", "x", "v", "F", "u")


def target(name: str) -> str:
    """One of `TARGETS`. **Returns:** `name`."""
    if name not in TARGETS:
        raise ValueError(f"Unknown target {name!r}; choose one of {TARGETS}.")
    return name


# --- schedules (SPEC §1) ---------------------------------------------------------------------


def ddpm_linear(beta_min: float, beta_max: float, t_eps: float) -> tuple[float, float, float]:
    """`DDPMLinear`'s hyperparameters: $0 < \\beta_0 < \\beta_1$, $t_\\epsilon \\in (0, 1)$. **Returns:** them as floats."""
    beta_min, beta_max = positive("beta_min", beta_min), positive("beta_max", beta_max)
    if not beta_max > beta_min:
        raise ValueError(f"DDPMLinear needs beta_max > beta_min, got beta_min={beta_min}, beta_max={beta_max}.")
    t_eps = finite("t_eps", t_eps)
    if not 0.0 < t_eps < 1.0:
        raise ValueError(f"t_eps must lie in (0, 1), got {t_eps}; the usual value is 1e-5.")
    return beta_min, beta_max, t_eps


def kept_mass(mass: float, logsnr_min: float, logsnr_max: float) -> float:
    """`EDMLogNormal`'s probability mass on $[\\lambda_{\\min}, \\lambda_{\\max}]$ must be > 0. **Returns:** `mass`."""
    if not mass > 0:
        raise ValueError(
            f"EDMLogNormal keeps no probability mass on [{logsnr_min}, {logsnr_max}]; widen the range or move p_mean."
        )
    return float(mass)


def interpolated_slope(slope, shift_start: float, shift_end: float) -> None:
    """`CosineInterpolated` is a schedule only if $d\\lambda/dt < 0$ on the whole grid `slope`."""
    if not np.all(np.asarray(slope) < 0):
        raise ValueError(
            f"CosineInterpolated(shift_start={shift_start}, shift_end={shift_end}) is not "
            "strictly decreasing in t on this range; bring the two shifts closer together."
        )


# --- losses (SPEC §3) --------------------------------------------------------------------------


def num_steps(value) -> int:
    """The number of VDM steps $T \\ge 1$. **Returns:** `int`."""
    return positive_int("num_steps", value, 1, " (the number T of discrete diffusion steps)")


def vocab_size(value) -> int:
    """The number of data levels $V \\ge 2$. **Returns:** `int`."""
    return positive_int("vocab_size", value, 2, " (the number of data levels, 256 for 8-bit images)")


def step_out_of_range_message(step: str, num_steps: int) -> str:
    """Error text for a step outside 1..T; `step` describes it, e.g. `"i=0"`. **Returns:** the text."""
    return (
        f"step {step} is out of range for num_steps={num_steps}; draw i from {{1, ..., T}} "
        f"(e.g. rng.integers(1, {num_steps} + 1))."
    )


# --- ELBO theorems (SPEC §4) ---------------------------------------------------------------


def noise_draws(x, eps) -> None:
    """`eps` must be `(n, *x.shape)` with $n \\ge 1$ draws."""
    if np.ndim(eps) != np.ndim(x) + 1 or np.shape(eps)[1:] != np.shape(x) or np.shape(eps)[0] < 1:
        raise ValueError(
            f"x has shape {np.shape(x)} but eps has shape {np.shape(eps)}; eps must hold n >= 1 "
            f"noise draws of shape (n, *x.shape), e.g. rng.standard_normal((2, *x.shape))."
        )


def monotone_rtol(dtype) -> float:
    """`is_monotonic`'s default tolerance for values of `dtype`: a rise below `rtol * max|w|` is
    rounding noise. **Returns:** 1e-10 for float64, 1e-6 for float32 or narrower."""
    return 1e-10 if np.dtype(dtype).itemsize >= 8 else 1e-6


def monotone(weighting, lo: float, hi: float, is_monotone: bool) -> None:
    """Raise the `ValueError` that names `Monotonic` as the fix unless `is_monotone`."""
    if not is_monotone:
        raise ValueError(
            f"{type(weighting).__name__} is not monotone (non-increasing in logsnr) on "
            f"[{lo}, {hi}], so it is no noise-augmentation ELBO; wrap it as "
            f"Monotonic(weighting, logsnr_min={lo}, logsnr_max={hi}) first."
        )


# --- the adaptive schedule (SPEC §5) ---------------------------------------------------------

ADAPTIVE_TARGETS = ("mean", "rms")


def adaptive(logsnr_min, logsnr_max, n_bins, decay, target, uniform_weight):
    """`Adaptive`'s hyperparameters.

    **Returns:** `(logsnr_min, logsnr_max, n_bins, decay, target, uniform_weight)`, normalised.
    """
    lo, hi = logsnr_range(logsnr_min, logsnr_max)
    try:
        n = operator.index(n_bins)
    except TypeError:
        raise ValueError(f"n_bins must be an integer, got {n_bins!r}; the usual value is 100.") from None
    if n < 1:
        raise ValueError(f"n_bins must be >= 1, got {n}; the usual value is 100.")
    decay = finite("decay", decay)
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must lie in [0, 1), got {decay!r}; it is the EMA factor per update (e.g. 0.999).")
    if target not in ADAPTIVE_TARGETS:
        raise ValueError(
            f"target must be one of {ADAPTIVE_TARGETS}, got {target!r}: 'mean' tracks w*loss, "
            "'rms' tracks (w*loss)^2 and samples its square root (variance-optimal)."
        )
    uniform_weight = finite("uniform_weight", uniform_weight)
    if not 0.0 < uniform_weight <= 1.0:
        raise ValueError(
            f"uniform_weight must lie in (0, 1], got {uniform_weight!r}; it keeps every bin "
            "sampled (e.g. 0.01); 1 gives the uniform proposal."
        )
    return lo, hi, n, decay, target, uniform_weight


# --- EDM time steps and samplers (SPEC §7) --------------------------------------------------


def edm_sigmas(n, sigma_min: float, sigma_max: float, rho: float) -> tuple[int, float, float, float]:
    """`edm_sigmas`'s arguments: $n \\ge 2$ levels, $0 < \\sigma_{\\min} < \\sigma_{\\max}$, $\\rho > 0$.

    **Returns:** `(n, sigma_min, sigma_max, rho)` as `int` and floats.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 2:
        raise ValueError(
            f"n must be an integer >= 2 (sigma_max and sigma_min are both sampled), got {n!r}; "
            "for a single denoising step pass sigmas=[sigma_max, 0.0] to the sampler."
        )
    sigma_min, sigma_max, rho = positive("sigma_min", sigma_min), positive("sigma_max", sigma_max), positive("rho", rho)
    if not sigma_min < sigma_max:
        raise ValueError(
            f"edm_sigmas needs sigma_min < sigma_max, got sigma_min={sigma_min}, "
            f"sigma_max={sigma_max}; swap them if they are reversed."
        )
    return int(n), sigma_min, sigma_max, rho


# The one table of the samplers `eqx_impl.evaluation.generate` runs (config, CLI, benchmarks).
SAMPLERS = ("heun", "euler", "stochastic", "dpm_2", "dpmpp_2m", "dpmpp_2m_sde", "ancestral", "ddim")


def sigmas(values) -> np.ndarray:
    """A sampler's noise levels: 1-D, at least 2, finite, >= 0, strictly decreasing. **Returns:** float64 array."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size < 2:
        raise ValueError(
            f"sigmas must be a 1-D array of at least 2 noise levels, got shape {values.shape}; "
            "build one with edm_sigmas(n)."
        )
    if not (np.all(np.isfinite(values)) and np.all(values >= 0) and np.all(np.diff(values) < 0)):
        raise ValueError(
            f"sigmas must be finite, >= 0 and strictly decreasing (noisiest first), got {values}; "
            "build them with edm_sigmas(n)."
        )
    return values


def logsnrs(values) -> np.ndarray:
    """A VP sampler's log-SNRs: 1-D, at least 2, finite, strictly increasing. **Returns:** float64 array."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size < 2:
        raise ValueError(
            f"logsnrs must be a 1-D array of at least 2 log-SNRs, got shape {values.shape}; "
            "e.g. schedule.logsnr(np.linspace(1, 0, n + 1))."
        )
    if not (np.all(np.isfinite(values)) and np.all(np.diff(values) > 0)):
        raise ValueError(
            f"logsnrs must be finite and strictly increasing (noisiest first), got {values}; "
            "reverse the array if it runs from least to most noise."
        )
    return values


# --- analytic data (SPEC §8) -----------------------------------------------------------------


def dim(value) -> int:
    """The length of one example, a positive integer. **Returns:** `int`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"dim must be a positive integer (the length of one example), got {value!r}; pass e.g. dim=2.")
    return int(value)


def last_axis(name: str, value, dim: int) -> None:
    """Raise unless `value`'s last axis has length `dim` (leading axes are batch axes)."""
    if np.ndim(value) < 1 or np.shape(value)[-1] != dim:
        raise ValueError(
            f"{name} has shape {np.shape(value)} but examples have shape ({dim},); pass an "
            f"array whose last axis has length {dim} (leading axes are batch axes)."
        )


def mixture(weights, means, stds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A Gaussian mixture's `(K,)` weights summing to 1, `(K, dim)` means, `(K,)` or `(K, dim)` stds.

    **Returns:** float64 copies `(weights, means, stds)`.
    """
    weights, means, stds = (np.asarray(v, dtype=np.float64) for v in (weights, means, stds))
    if weights.ndim != 1 or weights.shape[0] < 1:
        raise ValueError(f"weights must have shape (K,) with K >= 1 components, got shape {weights.shape}.")
    k = weights.shape[0]
    if means.ndim != 2 or means.shape[0] != k or means.shape[1] < 1:
        raise ValueError(
            f"means must have shape (K, dim) = ({k}, dim) to match weights of shape ({k},), got "
            f"shape {means.shape}; for 1-D data pass means[:, None]."
        )
    d = means.shape[1]
    if stds.shape not in ((k,), (k, d)):
        raise ValueError(
            f"stds must have shape ({k},) (isotropic) or ({k}, {d}) (diagonal) to match means of "
            f"shape {means.shape}, got shape {stds.shape}."
        )
    for name, value in (("weights", weights), ("means", means), ("stds", stds)):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{name} must be finite, got {value!r}; remove the NaN/inf entries.")
    if not np.all(weights > 0):
        raise ValueError(f"weights must all be > 0, got {weights!r}; drop components with zero weight.")
    if not np.all(stds > 0):
        raise ValueError(f"stds must all be > 0, got {stds!r}; pass standard deviations, not 0.")
    total = math.fsum(weights.tolist())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(
            f"weights must sum to 1, got sum {total!r}; normalise them first (weights / weights.sum(), in float64)."
        )
    return weights, means, stds
