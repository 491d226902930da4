r"""Per-example diffusion losses in JAX (mirror of `reference.losses`; SPEC §3).

Model convention: `eps_model(z, logsnr) -> ε̂` for one example; batch with `jax.vmap` at the
call site, e.g. `jax.vmap(eps_loss, (None, 0, 0, 0))(model, x, logsnr, eps)`. Nothing here
jits itself. Computations run in the dtype of `x` (cast log-SNRs and noise to it).

$$\ell(\lambda) = \|\epsilon - \hat\epsilon(\alpha x + \sigma\epsilon;\lambda)\|^2,\qquad
  \hat{\mathcal L} = \tfrac12\,\frac{w(\lambda)}{p(\lambda)}\,\ell(\lambda)\ \ (\lambda \sim p).$$
"""

from __future__ import annotations

import math
from typing import cast

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Shaped

import _checks
from eqx_impl._floats import as_float, concrete
from eqx_impl._typing import Array, ArrayLike, Float, Int, Scalar
from eqx_impl.schedules import AbstractSchedule, alpha_sigma
from eqx_impl.weightings import AbstractWeighting

# Inputs stay ArrayLike with independent shapes so that a mismatch reaches the checks below,
# whose ValueError names both shapes, rather than a type-check error.
Example = Float[ArrayLike, "..."]
Levels = Shaped[ArrayLike, "..."]  # integer levels 0..V-1 (integer or integral float dtype)

__all__ = [
    "bits_per_dim",
    "eps_loss",
    "levels_to_unit",
    "prior_kl",
    "reconstruction_nll",
    "vdm_continuous_loss",
    "vdm_discrete_loss",
    "weighted_loss",
]


def _scalar(value, dtype) -> Scalar:
    value = jnp.asarray(value)
    if value.ndim != 0:
        raise ValueError(
            f"expected a scalar for one example, got shape {value.shape}; "
            "vmap over a batch instead (e.g. jax.vmap(loss, (None, 0, 0, 0)))."
        )
    return value.astype(dtype)


def eps_loss(eps_model, x: Example, logsnr: Float[ArrayLike, ""], eps: Example) -> Scalar:
    r"""$\ell(\lambda) = \|\epsilon - \hat\epsilon(\alpha x + \sigma\epsilon;\lambda)\|^2$, $\alpha^2 = \mathrm{sigmoid}(\lambda)$.

    **Returns:** the scalar ε-loss (summed over all dimensions), in the dtype of `x`.
    """
    x = as_float(x)
    eps = jnp.asarray(eps)
    _checks.same_shape("x", x, "eps", eps)
    eps = eps.astype(x.dtype)
    logsnr = _scalar(logsnr, x.dtype)
    alpha, sigma = alpha_sigma(logsnr)
    eps_hat = eps_model(alpha * x + sigma * eps, logsnr)
    _checks.same_shape("x", x, "eps_model(z, logsnr)", eps_hat)
    return jnp.sum((eps - eps_hat.astype(x.dtype)) ** 2)


def weighted_loss(
    eps_model,
    x: Example,
    logsnr: Float[ArrayLike, ""],
    eps: Example,
    weighting: AbstractWeighting,
    density: Float[ArrayLike, ""],
) -> Scalar:
    r"""Importance-sampled weighted loss $\tfrac12\,w(\lambda)/p(\lambda)\cdot\ell(\lambda)$ for one draw $\lambda \sim p$.

    Unbiased for $\mathcal L_w(x) = \tfrac12\int w\,\mathbb E\ell\,d\lambda$ whatever the proposal $p$
    (`density` $= p(\lambda)$, e.g. `schedule.density(logsnr)`).

    **Returns:** a scalar in the dtype of `x`.
    """
    x = as_float(x)
    logsnr = _scalar(logsnr, x.dtype)
    density = _scalar(density, x.dtype)
    return 0.5 * weighting(logsnr) / density * eps_loss(eps_model, x, logsnr, eps)


def vdm_continuous_loss(
    eps_model, x: Example, t: Float[ArrayLike, ""], eps: Example, schedule: AbstractSchedule
) -> Scalar:
    r"""VDM's continuous-time diffusion loss $\tfrac12(-d\lambda/dt)\,\ell(\lambda(t))$ at $t \sim U(0,1)$.

    **Returns:** a scalar in the dtype of `x`.
    """
    x = as_float(x)
    t = _scalar(t, x.dtype)
    slope = schedule.dlogsnr_dt(t)
    return 0.5 * -slope * eps_loss(eps_model, x, schedule.logsnr(t), eps)


def vdm_discrete_loss(
    eps_model,
    x: Example,
    i: Int[ArrayLike, ""],
    eps: Example,
    schedule: AbstractSchedule,
    num_steps: int,
) -> Scalar:
    r"""VDM's $T$-step diffusion loss at step $i \in \{1..T\}$: $\tfrac12 T\operatorname{expm1}(\lambda_s - \lambda_t)\,\ell(\lambda_t)$.

    $t = i/T$, $s = (i-1)/T$; the mean over $i \sim U\{1..T\}$ is the sum of the $T$ reverse-step
    KLs. A concrete `i` out of range raises `ValueError`; a traced one is checked by `eqx.error_if`.

    **Returns:** a scalar in the dtype of `x`.
    """
    num_steps = _checks.num_steps(num_steps)
    x = as_float(x)
    i = jnp.asarray(i)
    if i.ndim != 0 or not jnp.issubdtype(i.dtype, jnp.integer):
        raise ValueError(f"step i must be an integer scalar in 1..{num_steps}, got {i!r}.")
    known = concrete(i)
    if known is not None:
        if not 1 <= int(known) <= num_steps:
            raise ValueError(_checks.step_out_of_range_message(f"i={int(known)}", num_steps))
    else:
        # error_if returns its input (an Array); its stub says PyTree.
        i = cast(Array, eqx.error_if(i, (i < 1) | (i > num_steps), _checks.step_out_of_range_message("i", num_steps)))
    # Both ends exact (t = 1 at i = T, s = 0 at i = 1) even where a vectorised division by T is
    # off by an ulp: a schedule as steep as EDMLogNormal's tail turns one ulp of t into 0.2 in λ.
    t = 1.0 - (num_steps - i).astype(x.dtype) / num_steps
    s = (i - 1).astype(x.dtype) / num_steps
    logsnr_t, logsnr_s = schedule.logsnr(t), schedule.logsnr(s)
    return 0.5 * num_steps * jnp.expm1(logsnr_s - logsnr_t) * eps_loss(eps_model, x, logsnr_t, eps)


def levels_to_unit(x: ArrayLike, vocab_size: int = 256) -> Array:
    r"""Data levels $\{0..V-1\}$ to bin centres in $[-1, 1]$: $f = 2(x + \tfrac12)/V - 1$.

    **Returns:** a floating array like `x` (the default float dtype for integer `x`).
    """
    vocab_size = _checks.vocab_size(vocab_size)
    return 2.0 * (as_float(x) + 0.5) / vocab_size - 1.0


# The series of `prior_gap` runs for alpha^2 <= 1/4; its first omitted term, (1/4)^26/26 < 1e-16,
# is below float64 spacing (the reference uses the same split).
SERIES_MAX_ALPHA2 = 0.25
SERIES_TERMS = 24


def prior_gap(logsnr: Float[ArrayLike, "*shape"]) -> Array:
    r"""$g(\lambda) = -\ln\sigma^2 - \alpha^2 = \mathrm{softplus}(\lambda) - \mathrm{sigmoid}(\lambda)$.

    For $a = \alpha^2 \le 1/4$ the series $\sum_{k\ge2} a^k/k$ (no cancellation), else the closed form.

    **Returns:** an array like `logsnr`.
    """
    logsnr = as_float(logsnr)
    a = jax.nn.sigmoid(logsnr)
    small = jnp.minimum(a, SERIES_MAX_ALPHA2)
    series = jnp.zeros_like(small)
    for k in range(SERIES_TERMS + 1, 1, -1):  # Horner: a^2 (1/2 + a (1/3 + ...))
        series = series * small + 1.0 / k
    return jnp.where(a <= SERIES_MAX_ALPHA2, small**2 * series, jax.nn.softplus(logsnr) - a)


def prior_kl(x: Example, logsnr_min: Float[ArrayLike, ""]) -> Scalar:
    r"""$\mathrm{KL}(q(z_1|x)\,\|\,\mathcal N(0,I)) = \tfrac12\sum(\alpha_1^2x^2 + \sigma_1^2 - \ln\sigma_1^2 - 1)
    = \tfrac12\sum(\alpha_1^2 x^2 + g(\lambda_{\min}))$ with $g$ from `prior_gap`.

    **Returns:** a scalar (nats) in the dtype of `x`.
    """
    x = as_float(x)
    logsnr_min = _scalar(logsnr_min, x.dtype)
    return 0.5 * jnp.sum(jax.nn.sigmoid(logsnr_min) * x**2 + prior_gap(logsnr_min))


def reconstruction_nll(x: Levels, logsnr_max: Float[ArrayLike, ""], eps: Example, vocab_size: int = 256) -> Scalar:
    r"""VDM's $-\ln p(x|z_0)$ for integer levels `x`, with logits over the bin centres $c_k$:

    $$\mathrm{logit}_k = -\tfrac12 e^{\lambda_{\max}}(\tilde z_0 - c_k)^2
      = -\tfrac12\big(e^{\lambda_{\max}/2}\,2(x - k)/V + \epsilon\big)^2,\quad
      \tilde z_0 = z_0/\alpha_0 = f + e^{-\lambda_{\max}/2}\epsilon,$$
    $f$ = `levels_to_unit(x)`, $f - c_k = 2(x-k)/V$ from integers (exact: the true bin's logit is
    $-\epsilon^2/2$ even when $e^{\lambda_{\max}/2}$ magnifies float32 rounding of $f$); NLL $= -\sum_{\mathrm{dims}}\log\mathrm{softmax}(\mathrm{logit})_x$.
    Levels outside $0..V-1$ are reported by `eqx.error_if`.

    **Returns:** a scalar (nats) in the dtype of `eps`.
    """
    vocab_size = _checks.vocab_size(vocab_size)
    levels = jnp.asarray(x)
    eps = as_float(eps)
    _checks.same_shape("x", levels, "eps", eps)
    if not jnp.issubdtype(levels.dtype, jnp.integer):
        levels = jnp.round(levels).astype(jnp.int32)
    levels = eqx.error_if(
        levels,
        (levels < 0) | (levels > vocab_size - 1),
        f"x must hold integer levels 0..{vocab_size - 1} for vocab_size={vocab_size}.",
    )
    lam = _scalar(logsnr_max, eps.dtype)
    offsets = 2.0 * (levels[..., None] - jnp.arange(vocab_size)).astype(eps.dtype) / vocab_size  # f - c_k
    logits = -0.5 * (jnp.exp(0.5 * lam) * offsets + eps[..., None]) ** 2
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.take_along_axis(log_probs, levels[..., None], axis=-1))


def bits_per_dim(recon: ArrayLike, prior: ArrayLike, diffusion: ArrayLike, num_dims: int) -> Array:
    r"""$(\mathrm{recon} + \mathrm{prior} + \mathrm{diffusion})/(D\ln 2)$: a bound in nats as bits per dimension.

    **Returns:** an array like the sum of the terms.
    """
    num_dims = _checks.positive_int("num_dims", num_dims)
    total = as_float(recon) + as_float(prior) + as_float(diffusion)
    return total / (num_dims * math.log(2.0))
