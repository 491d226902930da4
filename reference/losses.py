r"""Per-example diffusion losses (SPEC §3; Kingma & Gao 2023; VDM, Kingma et al. 2021).

Model convention: `eps_model(z, logsnr) -> ε̂` for one example `z` (any shape), a scalar
log-SNR. With $z = \alpha x + \sigma\epsilon$ (variance preserving) the ε-loss is
$\ell(\lambda) = \|\epsilon - \hat\epsilon(z;\lambda)\|^2$, summed over every dimension, and

$$\mathcal L_w(x)
  = \tfrac12\int_{\lambda_{\min}}^{\lambda_{\max}} w\,\mathbb E_\epsilon\ell(\lambda)\,d\lambda
  = \mathbb E_{\lambda\sim p}\Big[\tfrac12\,\frac{w(\lambda)}{p(\lambda)}\,\ell(\lambda)\Big]$$

for any proposal density $p$ on the interval: the noise schedule only changes the variance.
The VDM terms (prior, reconstruction, diffusion) add up to a bound in nats; `bits_per_dim`
converts it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

import _checks
from reference.schedules import alpha_sigma

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


# --- argument checks (shared with eqx_impl.losses, so the messages read alike) --------------


def _check_step(i, num_steps: int) -> int:
    if isinstance(i, bool) or np.ndim(i) != 0 or not np.issubdtype(np.asarray(i).dtype, np.integer):
        raise ValueError(f"step i must be an integer scalar in 1..{num_steps}, got {i!r}.")
    if not 1 <= int(i) <= num_steps:
        raise ValueError(_checks.step_out_of_range_message(f"i={int(i)}", num_steps))
    return int(i)


def _scalar_logsnr(logsnr) -> np.float64:
    if np.ndim(logsnr) != 0:
        raise ValueError(
            f"logsnr must be a scalar for one example, got shape {np.shape(logsnr)}; "
            "loop (or vmap, in eqx_impl) over a batch instead."
        )
    return np.float64(_checks.finite("logsnr", logsnr))


# --- losses --------------------------------------------------------------------------------


def eps_loss(eps_model, x, logsnr, eps):
    r"""The ε-loss of one example at one noise level.

    $$\ell(\lambda) = \|\epsilon - \hat\epsilon(\alpha x + \sigma\epsilon;\lambda)\|^2,\quad
      \alpha^2 = \mathrm{sigmoid}(\lambda),\ \sigma^2 = \mathrm{sigmoid}(-\lambda).$$

    **Returns:** $\ell$, a float64 scalar (summed over all dimensions).
    """
    x, eps = np.asarray(x, dtype=np.float64), np.asarray(eps, dtype=np.float64)
    _checks.same_shape("x", x, "eps", eps)
    logsnr = _scalar_logsnr(logsnr)
    alpha, sigma = alpha_sigma(logsnr)
    z = alpha * x + sigma * eps
    eps_hat = np.asarray(eps_model(z, logsnr), dtype=np.float64)
    _checks.same_shape("x", x, "eps_model(z, logsnr)", eps_hat)
    return np.sum((eps - eps_hat) ** 2)


def weighted_loss(eps_model, x, logsnr, eps, weighting, density):
    r"""Importance-sampled estimate of $\mathcal L_w(x)$ from one draw $\lambda \sim p$.

    $$\hat{\mathcal L} = \tfrac12\,\frac{w(\lambda)}{p(\lambda)}\,\ell(\lambda),\qquad
      \mathbb E_{\lambda\sim p,\,\epsilon}\hat{\mathcal L}
      = \tfrac12\int w\,\mathbb E\ell\,d\lambda.$$

    `density` is $p(\lambda)$ of the proposal that drew `logsnr` (for a schedule with
    $t \sim U(0,1)$: `schedule.density(logsnr)`).

    **Returns:** $\hat{\mathcal L}$, a float64 scalar.
    """
    density = np.float64(density)
    if not density > 0:
        raise ValueError(f"density must be > 0 (the proposal's p(logsnr) at the drawn logsnr), got {density!r}.")
    return 0.5 * weighting(logsnr) / density * eps_loss(eps_model, x, logsnr, eps)


def vdm_continuous_loss(eps_model, x, t, eps, schedule):
    r"""VDM's continuous-time diffusion loss at time $t \sim U(0,1)$.

    $$\mathcal L_\infty = \tfrac12\,\big(-\tfrac{d\lambda}{dt}\big)\,\ell(\lambda(t)).$$

    **Returns:** a float64 scalar; its mean over $t \sim U(0,1)$ is $\tfrac12\int\ell\,d\lambda$.
    """
    t = np.float64(t)
    return 0.5 * -schedule.dlogsnr_dt(t) * eps_loss(eps_model, x, schedule.logsnr(t), eps)


def vdm_discrete_loss(eps_model, x, i, eps, schedule, num_steps):
    r"""VDM's discrete-time diffusion loss with $T$ = `num_steps` steps, at step $i \in \{1..T\}$.

    With $t = i/T$, $s = (i-1)/T$:
    $$\mathcal L_T = \tfrac12\,T\,\operatorname{expm1}(\lambda_s - \lambda_t)\,\ell(\lambda_t),$$
    whose mean over $i \sim U\{1..T\}$ is $\sum_i \mathrm{KL}(q(z_s|z_t,x)\,\|\,p(z_s|z_t))$.

    **Returns:** a float64 scalar.
    """
    num_steps = _checks.num_steps(num_steps)
    i = _check_step(i, num_steps)
    logsnr_t = schedule.logsnr(1.0 - np.float64(num_steps - i) / num_steps)  # as eqx_impl: t(T) = 1
    logsnr_s = schedule.logsnr(np.float64(i - 1) / num_steps)
    return 0.5 * num_steps * np.expm1(logsnr_s - logsnr_t) * eps_loss(eps_model, x, logsnr_t, eps)


def levels_to_unit(x, vocab_size: int = 256):
    r"""Levels $x \in \{0, \dots, V-1\}$ to bin centres in $[-1, 1]$: $f = 2(x + \tfrac12)/V - 1$.

    **Returns:** float64 array like `x`.
    """
    vocab_size = _checks.vocab_size(vocab_size)
    return 2.0 * (np.asarray(x, dtype=np.float64) + 0.5) / vocab_size - 1.0


# Below this α², g = -ln(1-a) - a is summed as its series: terms fall by 4x, so 24 terms
# leave a truncation error below 0.25^24 / 13 < 3e-16 relative.
SERIES_MAX_ALPHA2 = 0.25
SERIES_TERMS = 24


def prior_gap(logsnr):
    r"""Prior-KL term $g(\lambda) = -\ln\sigma^2 - \alpha^2 = \mathrm{softplus} - \mathrm{sigmoid}$.

    For $a = \alpha^2 \le 1/4$ it is the series $\sum_{k\ge2} a^k/k$ (no cancellation when
    $g \approx a^2/2$ is tiny), else the closed form.

    **Returns:** float64 array like `logsnr`.
    """
    logsnr = np.asarray(logsnr, dtype=np.float64)
    a = special.expit(logsnr)
    small = np.minimum(a, SERIES_MAX_ALPHA2)
    series = np.zeros_like(small)
    for k in range(SERIES_TERMS + 1, 1, -1):  # Horner: a^2 (1/2 + a (1/3 + a (1/4 + ...)))
        series = series * small + 1.0 / k
    return np.where(a <= SERIES_MAX_ALPHA2, small**2 * series, np.logaddexp(0.0, logsnr) - a)


def prior_kl(x, logsnr_min):
    r"""$\mathrm{KL}(q(z_1|x)\,\|\,\mathcal N(0, I))$ for continuous data `x` at $\lambda_{\min}$.

    $$\mathrm{KL} = \tfrac12\sum\big(\alpha_1^2 x^2 + \sigma_1^2 - \ln\sigma_1^2 - 1\big)
      = \tfrac12\sum\big(\alpha_1^2 x^2 + g(\lambda_{\min})\big),\quad
      g = -\ln\sigma_1^2 - \alpha_1^2 = \mathrm{softplus}(\lambda) - \mathrm{sigmoid}(\lambda),$$
    with $g$ from `prior_gap` (which keeps its relative precision when $\lambda_{\min} \ll 0$).

    **Returns:** a float64 scalar (nats).
    """
    x = np.asarray(x, dtype=np.float64)
    lam = _scalar_logsnr(logsnr_min)
    return 0.5 * np.sum(special.expit(lam) * x**2 + prior_gap(lam))


def reconstruction_nll(x, logsnr_max, eps, vocab_size: int = 256):
    r"""VDM's reconstruction term $-\ln p(x \mid z_0)$ for integer levels `x` in $\{0..V-1\}$.

    $f$ = `levels_to_unit(x)`, $z_0 = \alpha_0 f + \sigma_0\epsilon$,
    $\tilde z_0 = z_0/\alpha_0 = f + e^{-\lambda_{\max}/2}\epsilon$;
    per dimension, logits over the bin centres $c_k = 2(k+\tfrac12)/V - 1$:
    $$\mathrm{logit}_k = -\tfrac12 e^{\lambda_{\max}}(\tilde z_0 - c_k)^2
      = -\tfrac12\big(e^{\lambda_{\max}/2}\,2(x - k)/V + \epsilon\big)^2,$$
    (the right form divides by no tiny $\alpha_0$, and $f - c_k = 2(x-k)/V$ is exact, so the
    true bin's logit is exactly $-\epsilon^2/2$ however large $e^{\lambda_{\max}/2}$), and
    $\mathrm{NLL} = -\sum_{\mathrm{dims}} \log\mathrm{softmax}(\mathrm{logit})_{x}$.

    **Returns:** a float64 scalar (nats).
    """
    vocab_size = _checks.vocab_size(vocab_size)
    levels = np.asarray(x)
    eps = np.asarray(eps, dtype=np.float64)
    _checks.same_shape("x", levels, "eps", eps)
    as_float = levels.astype(np.float64)
    if not np.all(np.isfinite(as_float) & (as_float == np.round(as_float))):
        raise ValueError("x must hold integer levels 0..vocab_size-1 (not values already mapped to [-1, 1]).")
    if levels.size and not (as_float.min() >= 0 and as_float.max() <= vocab_size - 1):
        raise ValueError(
            f"x holds levels in [{as_float.min()}, {as_float.max()}] but vocab_size={vocab_size} "
            f"allows 0..{vocab_size - 1}; pass the right vocab_size."
        )
    lam = _scalar_logsnr(logsnr_max)
    offsets = 2.0 * (as_float[..., None] - np.arange(vocab_size)) / vocab_size  # f - c_k
    logits = -0.5 * (np.exp(0.5 * lam) * offsets + eps[..., None]) ** 2
    log_probs = logits - special.logsumexp(logits, axis=-1, keepdims=True)
    true_bin = np.take_along_axis(log_probs, as_float.astype(np.int64)[..., None], axis=-1)
    return -np.sum(true_bin)


def bits_per_dim(recon, prior, diffusion, num_dims: int):
    r"""Nats to bits per dimension: $(\mathrm{recon} + \mathrm{prior} + \mathrm{diff.})/(D\ln 2)$.

    **Returns:** float64 scalar (or array, if the terms are arrays).
    """
    num_dims = _checks.positive_int("num_dims", num_dims)
    total = sum(np.asarray(term, dtype=np.float64) for term in (recon, prior, diffusion))
    return total / (num_dims * math.log(2.0))
