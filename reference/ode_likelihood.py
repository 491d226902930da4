r"""Exact log-likelihood through the probability-flow ODE (Song et al. 2021), EDM coordinates.

With $x_\sigma = x + \sigma\epsilon$ and a denoiser $D(x;\sigma) \approx \mathbb E[x_0 \mid x_\sigma = x]$,
the probability-flow ODE in $s = \ln\sigma$ and the change of log-density along it are
$$\frac{dx}{ds} = x - D(x; e^s), \qquad
  \frac{d}{ds}\ln p_{e^s}(x(s)) = -\nabla\!\cdot\!\big(x - D\big) = \operatorname{tr} J_D - d,$$
($J_D = \partial D/\partial x$, $d$ the number of dimensions), so from $\sigma_{\min}$ to $\sigma_{\max}$
$$\ln p_{\sigma_{\min}}(x) = \ln\mathcal N\big(x(\sigma_{\max}); 0, \sigma_{\max}^2 I\big)
  + \int_{\ln\sigma_{\min}}^{\ln\sigma_{\max}} \big(d - \operatorname{tr} J_D(x(s); e^s)\big)\,ds,$$
with the prior $p_{\sigma_{\max}} \approx \mathcal N(0, \sigma_{\max}^2 I)$. The trace is exact
(the $d$ basis directions) or Hutchinson's estimate with fixed probes $v_m$,
$\operatorname{tr} J \approx \frac1M\sum_m v_m^\top J v_m$, the same probes at every step.

NumPy has no autodiff: $J_D v$ is a sixth-order central difference along the unit vector
$u = v/\|v\|$ with step $h = 10^{-3}\sqrt{1+\sigma^2}$ (the scale of $x_\sigma$), all
stencil points in one batched denoiser call; its truncation error is $O((h/\ell)^6)$ for
a denoiser varying on a length scale $\ell$, its rounding error $O(10^{-16}/h)$, about
$10^{-12}$ relative for the analytic mixtures of the tests.

`ode_likelihood` is the fixed-step solver (Heun or RK4, uniform in $\ln\sigma$) that
`eqx_impl.ode_likelihood` mirrors; `ode_likelihood_solve_ivp` integrates the same system with
SciPy's adaptive RK45 at tight tolerances, the oracle of the tests. `dequantize` and
`ode_bits_per_dim` turn discrete levels into a density bound in bits per dimension.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np
from scipy import integrate

__all__ = [
    "ODELikelihood",
    "dequantize",
    "ode_bits_per_dim",
    "ode_likelihood",
    "ode_likelihood_solve_ivp",
]

SOLVERS = ("heun", "rk4")
_LOG_2PI = math.log(2.0 * math.pi)
# Sixth-order central difference: f'(0) ≈ Σ_k c_k f(k h) / h, k = ±1, ±2, ±3.
_FD_OFFSETS = np.array([1.0, 2.0, 3.0])
_FD_COEFFS = np.array([45.0, -9.0, 1.0]) / 60.0
_FD_STEP = 1e-3


class ODELikelihood(NamedTuple):
    r"""Result of the probability-flow likelihood for one example.

    - `log_prob`: $\ln p_{\sigma_{\min}}(x)$ = `prior_log_prob + delta_log_prob` (nats);
    - `prior_log_prob`: $\ln\mathcal N(x(\sigma_{\max}); 0, \sigma_{\max}^2 I)$;
    - `delta_log_prob`: $\int (d - \operatorname{tr}J_D)\,ds = \ln p_{\sigma_{\min}}(x) - \ln p_{\sigma_{\max}}(x(\sigma_{\max}))$;
    - `x_end`: $x(\sigma_{\max})$, the end of the ODE path, shaped like `x`.
    """

    log_prob: float
    prior_log_prob: float
    delta_log_prob: float
    x_end: np.ndarray


def _check_sigma_range(sigma_min, sigma_max) -> tuple[float, float]:
    lo, hi = float(sigma_min), float(sigma_max)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 < lo < hi):
        raise ValueError(
            f"need 0 < sigma_min < sigma_max (finite), got sigma_min={sigma_min!r}, "
            f"sigma_max={sigma_max!r}; sigma_max is the noisiest level, where the prior "
            "N(0, sigma_max^2 I) is used."
        )
    return lo, hi


def _check_num_steps(num_steps) -> int:
    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer (solver steps in ln σ), got {num_steps!r}.")
    return int(num_steps)


def _check_solver(solver) -> str:
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}.")
    return solver


def _check_probes(probes, shape) -> np.ndarray | None:
    if probes is None:
        return None
    probes = np.asarray(probes, dtype=np.float64)
    if probes.ndim != len(shape) + 1 or probes.shape[1:] != tuple(shape) or probes.shape[0] < 1:
        raise ValueError(
            f"probes must have shape (M, *x.shape) = (M, {', '.join(map(str, shape))}) with M >= 1 "
            f"Hutchinson probes, got {probes.shape}; pass probes=None for the exact trace."
        )
    if not np.all(np.isfinite(probes)) or np.any(np.all(probes.reshape(probes.shape[0], -1) == 0, axis=1)):
        raise ValueError("probes must be finite and nonzero (e.g. Rademacher ±1 or standard normal draws).")
    return probes


def _directions(probes, shape) -> tuple[np.ndarray, float]:
    """`(V, scale)`: trace ≈ scale · Σ_m v_mᵀ J v_m; the basis (scale 1) for the exact trace."""
    d = int(np.prod(shape))
    if probes is None:
        return np.eye(d).reshape(d, *shape), 1.0
    return probes, 1.0 / probes.shape[0]


def _drift(denoiser, x, sigma, directions, scale):
    r"""$(x - D(x;\sigma),\; d - \widehat{\operatorname{tr}}J_D)$ with finite-difference JVPs."""
    d = x.size
    norms = np.sqrt(np.sum(directions.reshape(directions.shape[0], -1) ** 2, axis=1))
    units = directions / norms.reshape(-1, *([1] * x.ndim))
    h = _FD_STEP * math.sqrt(1.0 + sigma * sigma)
    offsets = np.concatenate([[0.0], _FD_OFFSETS, -_FD_OFFSETS]) * h  # (7,)
    points = x + offsets.reshape(-1, 1, *([1] * x.ndim)) * units[None]  # (7, M, *shape)
    values = np.asarray(denoiser(points.reshape(-1, *x.shape), sigma), dtype=np.float64).reshape(points.shape)
    k = len(_FD_OFFSETS)
    diffs = values[1 : 1 + k] - values[1 + k :]  # D(x + k h u) − D(x − k h u)
    jvp_units = np.tensordot(_FD_COEFFS, diffs, axes=1) / h  # J u, (M, *shape)
    quad = norms**2 * np.sum((units * jvp_units).reshape(len(norms), -1), axis=1)  # vᵀ J v
    denoised = values[0, 0]
    return x - denoised, d - scale * float(np.sum(quad))


def _grid(sigma_min: float, sigma_max: float, num_steps: int) -> np.ndarray:
    r"""$s_i = \ln\sigma_{\min} + \tfrac iN(\ln\sigma_{\max} - \ln\sigma_{\min})$, $i = 0..N$."""
    lo, hi = math.log(sigma_min), math.log(sigma_max)
    return lo + (hi - lo) * (np.arange(num_steps + 1, dtype=np.float64) / num_steps)


def _gaussian_log_prob(x, sigma: float) -> float:
    r"""$\ln\mathcal N(x; 0, \sigma^2 I) = -\tfrac12(\|x\|^2/\sigma^2 + d\ln 2\pi\sigma^2)$."""
    return float(-0.5 * (np.sum(x**2) / sigma**2 + x.size * (_LOG_2PI + 2.0 * math.log(sigma))))


def ode_likelihood(
    denoiser,
    x,
    *,
    sigma_min: float,
    sigma_max: float,
    num_steps: int,
    solver: str = "heun",
    probes=None,
) -> ODELikelihood:
    r"""$\ln p_{\sigma_{\min}}(x)$ by a fixed-step solve of the probability-flow ODE in $s = \ln\sigma$.

    The state $(x, \Delta)$ follows $dx/ds = x - D(x;e^s)$, $d\Delta/ds = d - \operatorname{tr}J_D$
    on the grid $s_i = \ln\sigma_{\min} + \tfrac iN\ln(\sigma_{\max}/\sigma_{\min})$ with
    `solver` `"heun"` (explicit trapezoid, order 2, $2N$ denoiser calls) or `"rk4"`
    (classical Runge-Kutta, order 4, $4N$ calls). `denoiser(x, sigma) -> x̂` receives a
    batch `(B, *x.shape)` of points and a scalar $\sigma$. `x`: one example.

    `probes=None` takes the exact trace (the $d$ basis directions). `probes` of shape
    `(M, *x.shape)` use Hutchinson's estimator $\frac1M\sum_m v_m^\top J v_m$, unbiased when
    $\mathbb E[vv^\top] = I$. The path $x(s)$ does not depend on the probes, so the estimated
    $\Delta$ is $d\,\ln\tfrac{\sigma_{\max}}{\sigma_{\min}} - \frac1M\sum_m v_m^\top \bar A v_m$ with
    $\bar A$ the solver's weighted sum of the Jacobians on the path, and
    $$\operatorname{Var}\hat\Delta = \frac2M\Big(\|\bar S\|_F^2 - \sum_i \bar S_{ii}^2\Big)\ \text{(Rademacher)},\qquad
      \frac2M\|\bar S\|_F^2\ \text{(Gaussian)},\qquad \bar S = \tfrac12(\bar A + \bar A^\top).$$

    **Returns:** an `ODELikelihood` (`log_prob` in nats).
    """
    x = np.asarray(x, dtype=np.float64)
    lo, hi = _check_sigma_range(sigma_min, sigma_max)
    n = _check_num_steps(num_steps)
    _check_solver(solver)
    directions, scale = _directions(_check_probes(probes, x.shape), x.shape)
    grid = _grid(lo, hi, n)

    def f(s, y):
        return _drift(denoiser, y, math.exp(s), directions, scale)

    delta = 0.0
    for s, s_next in zip(grid[:-1], grid[1:], strict=True):
        h = s_next - s
        k1, g1 = f(s, x)
        if solver == "heun":
            k2, g2 = f(s_next, x + h * k1)
            x = x + 0.5 * h * (k1 + k2)
            delta += 0.5 * h * (g1 + g2)
        else:
            mid = s + 0.5 * h
            k2, g2 = f(mid, x + 0.5 * h * k1)
            k3, g3 = f(mid, x + 0.5 * h * k2)
            k4, g4 = f(s_next, x + h * k3)
            x = x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
            delta += (h / 6.0) * (g1 + 2.0 * g2 + 2.0 * g3 + g4)
    prior = _gaussian_log_prob(x, hi)
    return ODELikelihood(prior + delta, prior, delta, x)


def ode_likelihood_solve_ivp(
    denoiser,
    x,
    *,
    sigma_min: float,
    sigma_max: float,
    probes=None,
    rtol: float = 1e-11,
    atol: float = 1e-11,
    method: str = "RK45",
) -> ODELikelihood:
    r"""The same system as `ode_likelihood`, integrated by `scipy.integrate.solve_ivp` (adaptive).

    The oracle of the tests: RK45 (Dormand-Prince) with error control at `rtol`, `atol` on
    the flattened state $(x, \Delta)$; its error is set by the tolerances, not by a step count.

    **Returns:** an `ODELikelihood`.
    """
    x = np.asarray(x, dtype=np.float64)
    lo, hi = _check_sigma_range(sigma_min, sigma_max)
    directions, scale = _directions(_check_probes(probes, x.shape), x.shape)
    shape = x.shape

    def rhs(s, y):
        dx, ddelta = _drift(denoiser, y[:-1].reshape(shape), math.exp(s), directions, scale)
        return np.append(dx.reshape(-1), ddelta)

    sol = integrate.solve_ivp(
        rhs, (math.log(lo), math.log(hi)), np.append(x.reshape(-1), 0.0), method=method, rtol=rtol, atol=atol
    )
    if not sol.success:
        raise RuntimeError(f"solve_ivp failed: {sol.message}")
    x_end = sol.y[:-1, -1].reshape(shape)
    delta = float(sol.y[-1, -1])
    prior = _gaussian_log_prob(x_end, hi)
    return ODELikelihood(prior + delta, prior, delta, x_end)


def _check_num_levels(num_levels) -> int:
    if isinstance(num_levels, bool) or not isinstance(num_levels, numbers.Integral) or num_levels < 2:
        raise ValueError(f"num_levels must be an integer >= 2 (the number of discrete levels V), got {num_levels!r}.")
    return int(num_levels)


def dequantize(x, u, num_levels: int):
    r"""Uniform dequantisation of levels $x \in \{0..V-1\}$ into the model space $[-1, 1]$.

    $$y = \frac{2(x + u)}{V} - 1, \qquad u \sim U[0, 1)^d,$$
    so $y$ is uniform on the bin of width $2/V$ around `levels_to_unit(x)`, and
    $\ln P(x) \ge \mathbb E_u[\ln p(y)] + d\ln\tfrac2V$ (Jensen; Theis et al. 2016).

    **Returns:** float64 array shaped like `x`.
    """
    v = _check_num_levels(num_levels)
    x, u = np.asarray(x, dtype=np.float64), np.asarray(u, dtype=np.float64)
    if x.shape != u.shape:
        raise ValueError(f"u must be shaped like x (one uniform per dimension), got {u.shape} and {x.shape}.")
    return 2.0 * (x + u) / v - 1.0


def ode_bits_per_dim(log_prob, num_dims: int, num_levels: int | None = None):
    r"""Bits per dimension of a density value, on the same footing as the VDM bound's `bits_per_dim`.

    Continuous data (`num_levels=None`): $-\ln p(x)/(d\ln 2)$. Levels dequantised by
    `dequantize`: the bin volume $(2/V)^d$ turns the density of $y$ into a bound on the
    probability of the levels, $-\big(\ln p(y) + d\ln\tfrac2V\big)/(d\ln 2)$.

    **Returns:** float64 array shaped like `log_prob`.
    """
    if isinstance(num_dims, bool) or not isinstance(num_dims, numbers.Integral) or num_dims < 1:
        raise ValueError(f"num_dims must be a positive integer, got {num_dims!r}.")
    log_prob = np.asarray(log_prob, dtype=np.float64)
    log_volume = 0.0 if num_levels is None else num_dims * math.log(2.0 / _check_num_levels(num_levels))
    return -(log_prob + log_volume) / (num_dims * math.log(2.0))
