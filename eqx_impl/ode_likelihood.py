r"""Exact log-likelihood through the probability-flow ODE (mirror of `reference.ode_likelihood`).

In $s = \ln\sigma$ the probability-flow ODE and the change of log-density along it are
$$\frac{dx}{ds} = x - D(x; e^s), \qquad \frac{d}{ds}\ln p_{e^s}(x(s)) = \operatorname{tr} J_D - d,$$
so $\ln p_{\sigma_{\min}}(x) = \ln\mathcal N(x(\sigma_{\max}); 0, \sigma_{\max}^2 I) +
\int_{\ln\sigma_{\min}}^{\ln\sigma_{\max}} (d - \operatorname{tr}J_D)\,ds$ (Song et al. 2021;
derivation in `docs/theory/ode-likelihood.md`).

One example per call (batch with `jax.vmap`); the steps run in `jax.lax.scan`, so the call
jits (wrap it in `eqx.filter_jit`; nothing here jits itself). $J_D v$ comes from
`jax.linearize` (one denoiser evaluation, then one JVP per direction, vmapped): the exact
trace uses the $d$ basis directions, Hutchinson's estimator the given probes.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from eqx_impl._typing import Array, ArrayLike, Data, Float, Real, Scalar

__all__ = ["ODELikelihood", "dequantize", "ode_bits_per_dim", "ode_likelihood"]

SOLVERS = ("heun", "rk4")
_LOG_2PI = math.log(2.0 * math.pi)


class ODELikelihood(NamedTuple):
    r"""Result for one example (a pytree, so `jax.vmap` stacks it).

    - `log_prob`: $\ln p_{\sigma_{\min}}(x)$ = `prior_log_prob + delta_log_prob` (nats);
    - `prior_log_prob`: $\ln\mathcal N(x(\sigma_{\max}); 0, \sigma_{\max}^2 I)$;
    - `delta_log_prob`: $\int (d - \operatorname{tr}J_D)\,ds$;
    - `x_end`: $x(\sigma_{\max})$, shaped like `x`.
    """

    log_prob: Scalar
    prior_log_prob: Scalar
    delta_log_prob: Scalar
    x_end: Data


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


def _check_num_levels(num_levels) -> int:
    if isinstance(num_levels, bool) or not isinstance(num_levels, numbers.Integral) or num_levels < 2:
        raise ValueError(f"num_levels must be an integer >= 2 (the number of discrete levels V), got {num_levels!r}.")
    return int(num_levels)


def _directions(probes, x: Array) -> tuple[Array, float]:
    """`(V, scale)` with `V` of shape `(M, d)`: trace ≈ scale · Σ_m v_mᵀ J v_m."""
    d = x.size
    if probes is None:
        return jnp.eye(d, dtype=x.dtype), 1.0
    probes = jnp.asarray(probes, x.dtype)
    if probes.ndim != x.ndim + 1 or probes.shape[1:] != x.shape or probes.shape[0] < 1:
        raise ValueError(
            f"probes must have shape (M, *x.shape) = (M, {', '.join(map(str, x.shape))}) with M >= 1 "
            f"Hutchinson probes, got {probes.shape}; pass probes=None for the exact trace "
            "(batch examples with jax.vmap, not through probes)."
        )
    return probes.reshape(probes.shape[0], d), 1.0 / probes.shape[0]


def _trace_drift(denoiser, shape: tuple[int, ...], directions: Array, scale: float) -> Callable:
    r"""The right-hand side $f(s, x) = (x - D(x; e^s),\; d - \widehat{\operatorname{tr}}J_D)$ on
    the flattened state, with $\widehat{\operatorname{tr}}J_D$ = `scale` $\cdot\sum_m v_m^\top J_D v_m$
    over the rows $v_m$ of `directions` (one linearisation, then one JVP per direction).

    **Returns:** `f(s, xf) -> (dx/ds, dΔ/ds)`.
    """
    d = math.prod(shape)

    def f(s, xf):
        sigma = jnp.exp(s)
        denoised, jvp = jax.linearize(lambda y: denoiser(y.reshape(shape), sigma).reshape(-1), xf)
        quad = jnp.sum(directions * jax.vmap(jvp)(directions))  # Σ_m v_mᵀ J v_m
        return xf - denoised, d - scale * quad

    return f


def _solver_step(f: Callable, solver: str) -> Callable:
    r"""One fixed step $s \to s'$, $h = s' - s$, of the state $(x, \Delta)$ for `lax.scan`:
    Heun $y + \tfrac h2(k_1 + k_2)$, or RK4 $y + \tfrac h6(k_1 + 2k_2 + 2k_3 + k_4)$.

    **Returns:** `step((xf, delta), (s, s_next)) -> ((xf, delta), None)`.
    """

    def step(carry, ends):
        xf, delta = carry
        s, s_next = ends
        h = s_next - s
        k1, g1 = f(s, xf)
        if solver == "heun":
            k2, g2 = f(s_next, xf + h * k1)
            return (xf + 0.5 * h * (k1 + k2), delta + 0.5 * h * (g1 + g2)), None
        mid = s + 0.5 * h
        k2, g2 = f(mid, xf + 0.5 * h * k1)
        k3, g3 = f(mid, xf + 0.5 * h * k2)
        k4, g4 = f(s_next, xf + h * k3)
        xf = xf + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        return (xf, delta + (h / 6.0) * (g1 + 2.0 * g2 + 2.0 * g3 + g4)), None

    return step


def _log_sigma_grid(lo: float, hi: float, n: int, dtype) -> Array:
    r"""$s_i = \ln\sigma_{\min} + \tfrac iN\ln(\sigma_{\max}/\sigma_{\min})$, $i = 0..N$, computed in float64.

    **Returns:** shape `(n + 1,)` in `dtype`.
    """
    log_lo, log_hi = math.log(lo), math.log(hi)
    grid = log_lo + (log_hi - log_lo) * (np.arange(n + 1, dtype=np.float64) / n)
    return jnp.asarray(grid, dtype)


def _prior_log_prob(xf: Array, hi: float, dtype) -> Array:
    r"""$\ln\mathcal N(x; 0, \sigma_{\max}^2 I) = -\tfrac12(\|x\|^2/\sigma_{\max}^2 + d(\ln 2\pi + 2\ln\sigma_{\max}))$.

    **Returns:** a scalar in `dtype`.
    """
    hi_ = jnp.asarray(hi, dtype)
    return -0.5 * (jnp.sum(xf**2) / hi_**2 + xf.size * (_LOG_2PI + 2.0 * jnp.log(hi_)))


def ode_likelihood(
    denoiser: Callable[[Data, Scalar], Data],
    x: Float[ArrayLike, "*dims"],
    *,
    sigma_min: float,
    sigma_max: float,
    num_steps: int,
    solver: str = "heun",
    probes: Float[ArrayLike, " num_probes *dims"] | None = None,
) -> ODELikelihood:
    r"""$\ln p_{\sigma_{\min}}(x)$ by a fixed-step solve of the probability-flow ODE in $s = \ln\sigma$.

    The state $(x, \Delta)$ follows $dx/ds = x - D(x;e^s)$, $d\Delta/ds = d - \operatorname{tr}J_D$
    on $s_i = \ln\sigma_{\min} + \tfrac iN\ln(\sigma_{\max}/\sigma_{\min})$, with `solver`
    `"heun"` (order 2, $2N$ denoiser evaluations) or `"rk4"` (order 4, $4N$).
    `denoiser(x, sigma) -> x̂` acts on one example; `x` is one example.

    `probes=None`: exact trace. `probes` `(M, *x.shape)`: Hutchinson's
    $\frac1M\sum_m v_m^\top J v_m$ with the same probes at every step (unbiased when
    $\mathbb E[vv^\top] = I$); with $\bar S$ the symmetric part of the solver's weighted sum of
    Jacobians along the path, $\operatorname{Var}\hat\Delta = \frac2M(\|\bar S\|_F^2 - \sum_i\bar S_{ii}^2)$
    for Rademacher probes and $\frac2M\|\bar S\|_F^2$ for Gaussian ones.

    **Returns:** an `ODELikelihood` of scalars (nats) and `x_end`, in the dtype of `x`.
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    lo, hi = _check_sigma_range(sigma_min, sigma_max)
    n = _check_num_steps(num_steps)
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}.")
    directions, scale = _directions(probes, x)
    step = _solver_step(_trace_drift(denoiser, x.shape, directions, scale), solver)
    grid = _log_sigma_grid(lo, hi, n, x.dtype)
    init = (x.reshape(-1), jnp.zeros((), x.dtype))
    (xf, delta), _ = lax.scan(step, init, (grid[:-1], grid[1:]))
    prior = _prior_log_prob(xf, hi, x.dtype)
    return ODELikelihood(prior + delta, prior, delta, xf.reshape(x.shape))


def dequantize(x: Real[ArrayLike, "*dims"], u: Float[ArrayLike, "*dims"], num_levels: int) -> Float[Array, "*dims"]:
    r"""Uniform dequantisation $y = 2(x + u)/V - 1$ of levels $x \in \{0..V-1\}$, $u \sim U[0,1)^d$.

    **Returns:** shaped like `x`, in the dtype of `u`.
    """
    v = _check_num_levels(num_levels)
    u = jnp.asarray(u)
    if not jnp.issubdtype(u.dtype, jnp.floating):
        u = u.astype(jnp.result_type(float))
    x = jnp.asarray(x).astype(u.dtype)
    if x.shape != u.shape:
        raise ValueError(f"u must be shaped like x (one uniform per dimension), got {u.shape} and {x.shape}.")
    return 2.0 * (x + u) / v - 1.0


def ode_bits_per_dim(log_prob: Float[ArrayLike, "*batch"], num_dims: int, num_levels: int | None = None) -> Array:
    r"""Bits per dimension: $-\ln p/(d\ln2)$, or $-(\ln p(y) + d\ln\tfrac2V)/(d\ln 2)$ for dequantised levels.

    **Returns:** shaped like `log_prob`.
    """
    if isinstance(num_dims, bool) or not isinstance(num_dims, numbers.Integral) or num_dims < 1:
        raise ValueError(f"num_dims must be a positive integer, got {num_dims!r}.")
    log_prob = jnp.asarray(log_prob)
    log_volume = 0.0 if num_levels is None else num_dims * math.log(2.0 / _check_num_levels(num_levels))
    return -(log_prob + log_volume) / (num_dims * math.log(2.0))
