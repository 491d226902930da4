r"""Importance sampling of log-SNR and the adaptive schedule (mirror of `reference.importance`).

$\hat{\mathcal L} = \tfrac12\,w(\lambda)\,\ell(\lambda)/p(\lambda)$, $\lambda \sim p$, has mean
$\mathcal L_w = \tfrac12\int w\,m_1\,d\lambda$ and variance
$\tfrac14\int w^2 m_2/p\,d\lambda - \mathcal L_w^2$; $p^* \propto w\sqrt{m_2}$ minimises it.

Integrals use fixed composite Gauss–Legendre quadrature: the interval is split at the
weighting's `kinks` and at any extra `points`, each piece into panels of width at most
$(\lambda_{\max} - \lambda_{\min})/32$, and each panel gets the 16-point rule (exact for
polynomials of degree 31). For integrands analytic in the strip $|\operatorname{Im}\lambda| < \pi$
(sigmoids, $\mathrm{sech}(\lambda/2)$ and their products) and a range of width 60, the panel
half-width is $h \le 0.94$ and the error is $O(\rho^{-32})$ with
$\rho = \pi/h + \sqrt{\pi^2/h^2 + 1} \ge 6.8$, i.e. below $10^{-20}$ relative: the result is
as accurate as the dtype's summation. Break points must be concrete numbers (not traced).

`weighting` is an `AbstractWeighting`; it and the callables `density`, `m1`, `m2` take a 1-D array of
log-SNRs and act elementwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import _checks
from eqx_impl._typing import Array, ArrayLike, Float, Int, LogSNR
from eqx_impl.weightings import AbstractWeighting

_GL_ORDER = 16
_GL_PANELS = 32
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(_GL_ORDER)


def _float_dtype():
    return jnp.result_type(float)  # float32, or float64 under jax.enable_x64


def _gauss_legendre(lo: float, hi: float, points) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (float64 NumPy) of the composite rule described in the module docstring."""
    inner = sorted({float(p) for p in np.ravel(np.asarray(points, np.float64)) if lo < p < hi})
    breaks = [lo, *inner, hi]
    nodes, weights = [], []
    for a, b in zip(breaks[:-1], breaks[1:], strict=True):
        panels = max(1, math.ceil(_GL_PANELS * (b - a) / (hi - lo)))
        edges = np.linspace(a, b, panels + 1)
        half = 0.5 * np.diff(edges)
        mid = 0.5 * (edges[1:] + edges[:-1])
        nodes.append((mid[:, None] + half[:, None] * _GL_NODES).ravel())
        weights.append((half[:, None] * _GL_WEIGHTS).ravel())
    return np.concatenate(nodes), np.concatenate(weights)


def _integrate(f: Callable, lo: float, hi: float, points) -> Array:
    nodes, weights = _gauss_legendre(lo, hi, points)
    dtype = _float_dtype()
    return jnp.sum(jnp.asarray(weights, dtype) * f(jnp.asarray(nodes, dtype)))


def _break_points(weighting: AbstractWeighting, points) -> tuple[float, ...]:
    """The weighting's kinks and the extra `points`: the quadrature's break points."""
    if not isinstance(weighting, AbstractWeighting):
        raise TypeError(
            f"weighting must be an AbstractWeighting (e.g. eqx_impl.Sigmoid(2.0)), got "
            f"{type(weighting).__name__}; to use a function w(λ), subclass AbstractWeighting "
            "with `__call__` and `kinks` (the log-SNRs where dw/dλ jumps, () if none)."
        )
    return tuple(weighting.kinks) + tuple(np.ravel(np.asarray(points, np.float64)))


def estimator_mean(weighting: AbstractWeighting, m1, logsnr_min: float, logsnr_max: float, *, points=()) -> Array:
    r"""$\mathcal L_w = \tfrac12\int_{\lambda_{\min}}^{\lambda_{\max}} w\,m_1\,d\lambda$.

    The mean of $\hat{\mathcal L}$ under any proposal.

    **Returns:** a scalar array.
    """
    lo, hi = _checks.logsnr_range(logsnr_min, logsnr_max)
    return 0.5 * _integrate(lambda x: weighting(x) * m1(x), lo, hi, _break_points(weighting, points))


def estimator_variance(
    weighting: AbstractWeighting, density, m1, m2, logsnr_min: float, logsnr_max: float, *, points=()
) -> Array:
    r"""Variance of $\hat{\mathcal L} = \tfrac12\,w\,\ell/p$ under the proposal $p$ = `density`.

    $$\operatorname{Var} = \tfrac14\int \frac{w^2 m_2}{p}\,d\lambda - \mathcal L_w^2.$$
    Pass the density's discontinuities (e.g. `Adaptive.edges`) as `points`.

    **Returns:** a scalar array.
    """
    lo, hi = _checks.logsnr_range(logsnr_min, logsnr_max)
    pts = _break_points(weighting, points)
    second = 0.25 * _integrate(lambda x: weighting(x) ** 2 * m2(x) / density(x), lo, hi, pts)
    return second - estimator_mean(weighting, m1, lo, hi, points=points) ** 2


class OptimalProposal(eqx.Module):
    r"""$p^*(\lambda) = w(\lambda)\sqrt{m_2(\lambda)}/Z$ on the interval, 0 outside.

    $Z = \int w\sqrt{m_2}\,d\lambda$ is `normalizer`.
    """

    weighting: AbstractWeighting
    m2: Callable
    logsnr_min: float = eqx.field(static=True)
    logsnr_max: float = eqx.field(static=True)
    normalizer: Float[Array, ""]

    @property
    def kinks(self) -> tuple[float, ...]:
        """The weighting's kinks (where $p^*$'s derivative may jump)."""
        return self.weighting.kinks

    def __call__(self, logsnr: LogSNR) -> Array:
        logsnr = jnp.asarray(logsnr, self.normalizer.dtype)
        inside = (logsnr >= self.logsnr_min) & (logsnr <= self.logsnr_max)
        return jnp.where(inside, self.weighting(logsnr) * jnp.sqrt(self.m2(logsnr)) / self.normalizer, 0.0)


def optimal_proposal(
    weighting: AbstractWeighting, m2, logsnr_min: float, logsnr_max: float, *, points=()
) -> OptimalProposal:
    r"""The variance-optimal proposal $p^* \propto w\sqrt{m_2}$, normalised on the interval.

    **Returns:** an `OptimalProposal`, a callable density of log-SNR.
    """
    lo, hi = _checks.logsnr_range(logsnr_min, logsnr_max)
    z = _integrate(lambda x: weighting(x) * jnp.sqrt(m2(x)), lo, hi, _break_points(weighting, points))
    return OptimalProposal(weighting, m2, lo, hi, z)


def optimal_variance(weighting: AbstractWeighting, m1, m2, logsnr_min: float, logsnr_max: float, *, points=()) -> Array:
    r"""The smallest variance over proposals.

    $$\operatorname{Var}_{\min} = \tfrac14\Big(\int w\sqrt{m_2}\,d\lambda\Big)^2 - \mathcal L_w^2.$$

    **Returns:** a scalar array.
    """
    lo, hi = _checks.logsnr_range(logsnr_min, logsnr_max)
    z = _integrate(lambda x: weighting(x) * jnp.sqrt(m2(x)), lo, hi, _break_points(weighting, points))
    return 0.25 * z**2 - estimator_mean(weighting, m1, lo, hi, points=points) ** 2


# --- the adaptive schedule ------------------------------------------------------------------


class AdaptiveState(NamedTuple):
    """State of `Adaptive`: per bin the (biased) EMA and the number of batches that updated it."""

    ema: Float[Array, " n_bins"]
    count: Int[Array, " n_bins"]


class Adaptive(eqx.Module):
    r"""Kingma & Gao's adaptive noise schedule (see `reference.importance.Adaptive` for the math).

    Per bin $k$ an EMA $e_k$ of the batch mean of $w\ell$ (`"mean"`) or $(w\ell)^2$ (`"rms"`),
    bias-corrected $c_k = e_k/(1-\beta^{n_k})$, $q_k = c_k$ or $\sqrt{c_k}$, bin masses
    $\pi_k = (1-\alpha)q_k/\sum_j q_j + \alpha/n$. Hyperparameters are static; `init`, `sample`
    and `update` are pure, so they jit and run inside `jax.lax.scan`.
    """

    logsnr_min: float = eqx.field(static=True, converter=float)
    logsnr_max: float = eqx.field(static=True, converter=float)
    n_bins: int = eqx.field(default=100, static=True)
    decay: float = eqx.field(default=0.999, static=True, converter=float)
    target: str = eqx.field(default="mean", static=True)
    uniform_weight: float = eqx.field(default=0.01, static=True, converter=float)

    def __check_init__(self):
        _checks.adaptive(
            self.logsnr_min,
            self.logsnr_max,
            self.n_bins,
            self.decay,
            self.target,
            self.uniform_weight,
        )

    @property
    def width(self) -> float:
        """Bin width $\\Delta = (\\lambda_{\\max} - \\lambda_{\\min})/n$."""
        return (self.logsnr_max - self.logsnr_min) / self.n_bins

    @property
    def edges(self) -> np.ndarray:
        """The `n_bins + 1` bin edges: a concrete float64 NumPy array, usable as `points`."""
        edges = self.logsnr_min + self.width * np.arange(self.n_bins + 1, dtype=np.float64)
        edges[-1] = self.logsnr_max
        return edges

    def init(self) -> AdaptiveState:
        """**Returns:** the empty state (no bin updated: the uniform proposal)."""
        return AdaptiveState(jnp.zeros(self.n_bins, _float_dtype()), jnp.zeros(self.n_bins, jnp.int32))

    def bin_index(self, logsnr: LogSNR) -> Int[Array, "*shape"]:
        r"""The bin of each log-SNR, $\lambda_{\max}$ in the last bin.

        $$k = \big\lfloor n(\lambda - \lambda_{\min})/(\lambda_{\max}-\lambda_{\min}) \big\rfloor.$$

        **Returns:** int32 array like `logsnr`.
        """
        logsnr = jnp.asarray(logsnr)
        scaled = (logsnr - self.logsnr_min) * (self.n_bins / (self.logsnr_max - self.logsnr_min))
        return jnp.clip(jnp.floor(scaled), 0, self.n_bins - 1).astype(jnp.int32)

    def bin_masses(self, state: AdaptiveState) -> Float[Array, " n_bins"]:
        r"""The bin probabilities $\pi_k$, computed directly (not as CDF differences).

        **Returns:** `(n_bins,)` positive array summing to 1.
        """
        ema, count = state.ema, state.count
        dtype = ema.dtype
        updated = count > 0
        n_updated = jnp.sum(updated)
        count_f = jnp.where(updated, count, 1).astype(dtype)
        # 1 - decay^n without cancellation for decay close to 1; decay = 0 means no memory.
        log_decay = math.log(self.decay) if self.decay > 0 else -math.inf
        denom = jnp.where(updated, -jnp.expm1(count_f * log_decay), 1.0)
        corrected = jnp.where(updated, ema / denom, 0.0)
        fill = jnp.where(n_updated > 0, jnp.sum(corrected) / jnp.maximum(n_updated, 1).astype(dtype), 1.0)
        c = jnp.where(updated, corrected, fill)
        q = jnp.sqrt(c) if self.target == "rms" else c
        total = jnp.sum(q)
        q = jnp.where(total > 0, q / jnp.where(total > 0, total, 1.0), 1.0 / self.n_bins)
        pi = (1.0 - self.uniform_weight) * q + self.uniform_weight / self.n_bins
        return pi / jnp.sum(pi)

    def cdf_knots(self, state: AdaptiveState) -> Float[Array, " n_edges"]:
        r"""The CDF at the bin edges, $F_k = \sum_{j<k}\pi_j$, normalised so $F_n = 1$ exactly.

        **Returns:** `(n_bins + 1,)` increasing array from 0 to 1.
        """
        masses = self.bin_masses(state)
        cdf = jnp.concatenate([jnp.zeros(1, masses.dtype), jnp.cumsum(masses)])
        return cdf / cdf[-1]

    def density(self, state: AdaptiveState, logsnr: LogSNR) -> Array:
        """$p(\\lambda) = \\pi_k/\\Delta$ on bin $k$, 0 outside the range.

        **Returns:** array like `logsnr`.
        """
        logsnr = jnp.asarray(logsnr, state.ema.dtype)
        masses = self.bin_masses(state)
        inside = (logsnr >= self.logsnr_min) & (logsnr <= self.logsnr_max)
        return jnp.where(inside, masses[self.bin_index(logsnr)] / self.width, 0.0)

    def sample(self, state: AdaptiveState, u: Float[ArrayLike, "*shape"]) -> tuple[Array, Array]:
        r"""Inverse CDF, increasing in $u \in [0, 1)$.

        For $u \in [F_k, F_{k+1})$: $\lambda = \lambda_{\min} + \Delta\,(k + (u - F_k)/\pi_k)$.

        Deterministic, so stratified $u_i = (u_0 + i/B) \bmod 1$ gives one sample per $1/B$ of mass.
        $u$ outside $[0, 1)$ is not checked (it extrapolates past the range).

        **Returns:** `(logsnr, density)`, arrays like `u`.
        """
        u = jnp.asarray(u, state.ema.dtype)
        masses, cdf = self.bin_masses(state), self.cdf_knots(state)  # jit deduplicates
        k = jnp.clip(jnp.searchsorted(cdf, u, side="right") - 1, 0, self.n_bins - 1)
        # F_{k+1} - F_k equals π_k only to rounding: keep λ inside bin k, where p = π_k/Δ.
        frac = jnp.clip((u - cdf[k]) / masses[k], 0.0, 1.0)
        logsnr = self.logsnr_min + (k.astype(u.dtype) + frac) * self.width
        return logsnr, masses[k] / self.width

    def update(
        self,
        state: AdaptiveState,
        logsnr: Float[ArrayLike, "*batch"],
        values: Float[ArrayLike, "*batch"],
    ) -> AdaptiveState:
        r"""One EMA step per bin hit by the batch, with the batch mean of $y$ in that bin.

        Per-bin means come from segment sums, so the update jits with a static batch size.

        `values` are the per-sample $w(\lambda)\,\ell$, same shape as `logsnr`.

        **Returns:** the new `AdaptiveState`.
        """
        dtype = state.ema.dtype
        logsnr, values = jnp.asarray(logsnr, dtype), jnp.asarray(values, dtype)
        _checks.same_shape("logsnr", logsnr, "values", values)
        k = self.bin_index(logsnr).ravel()
        y = values.ravel() ** 2 if self.target == "rms" else values.ravel()
        sums = jax.ops.segment_sum(y, k, num_segments=self.n_bins)
        if self.target == "mean":
            # The check's callback carries the small per-bin sums rather than the per-example
            # values, so a batch split over devices (`train.parallel`) is not gathered onto
            # one device for it (the predicate itself is all-reduced by the compiler).
            sums = eqx.error_if(
                sums,
                jnp.any(values < 0),
                "values must be >= 0 for target='mean'; pass w(logsnr) * loss.",
            )
        hits = jax.ops.segment_sum(jnp.ones_like(k), k, num_segments=self.n_bins)
        batch_mean = sums / jnp.maximum(hits, 1).astype(dtype)
        hit = hits > 0
        ema = jnp.where(hit, self.decay * state.ema + (1.0 - self.decay) * batch_mean, state.ema)
        return AdaptiveState(ema, state.count + hit.astype(state.count.dtype))
