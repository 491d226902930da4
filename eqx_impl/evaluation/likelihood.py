r"""Negative ELBO and bits per dimension of a data set (VDM; Kingma et al. 2021, SPEC §3).

For one example the VDM bound on $-\ln p(x)$ is

$$-\mathrm{ELBO}(x) = \underbrace{\mathbb E_{\epsilon}[-\ln p(x \mid z_0)]}_{\text{recon}}
  + \underbrace{\mathrm{KL}(q(z_1|x)\,\|\,\mathcal N(0,I))}_{\text{prior}}
  + \underbrace{\tfrac12\,\mathbb E_{t\sim U(0,1),\,\epsilon}\big[(-d\lambda/dt)\,\ell(\lambda_t)\big]}_{\text{diffusion}},$$

estimated per example with `num_t` *stratified* times $t_k = (u + k/K) \bmod 1$,
$u \sim U(0,1)$ (each $t_k$ is uniform, so the mean over $k$ is unbiased, and the strata
remove most of the variance across $t$). Two decoders:

- **discrete** (`num_levels = V`): `x` holds integer levels $0..V-1$, the model sees
  `levels_to_unit(x)` in $[-1, 1]$, and recon is `reconstruction_nll` (VDM's decoder over
  the $V$ bin centres, with explicit noise for $z_0$);
- **continuous** (`num_levels = None`): `x` holds real values and
  $p(x|z_0) = \mathcal N(x;\, z_0/\alpha_0,\, e^{-\lambda_{\max}} I)$, whose expected NLL is the
  constant $\tfrac D2(1 + \ln 2\pi - \lambda_{\max})$ (used exactly, no noise needed).

Bits per dimension are $(\mathrm{recon} + \mathrm{prior} + \mathrm{diffusion})/(D\ln 2)$. The
endpoints $\lambda_{\max} = \lambda(0)$ and $\lambda_{\min} = \lambda(1)$ come from the schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Real

from eqx_impl._typing import Array, ArrayLike, Float, PRNGKeyArray, Scalar
from eqx_impl.data.dataset import Dataset
from eqx_impl.evaluation.estimate import Estimate, estimate, map_batches
from eqx_impl.losses import (
    bits_per_dim,
    levels_to_unit,
    prior_kl,
    reconstruction_nll,
    vdm_continuous_loss,
)
from eqx_impl.schedules import AbstractSchedule

__all__ = [
    "NegativeELBO",
    "dataset_bpd",
    "negative_elbo",
    "negative_elbo_terms",
    "stratified_times",
]


def stratified_times(u: Float[ArrayLike, ""], num_t: int) -> Float[Array, " num_t"]:
    r"""$t_k = (u + k/K) \bmod 1$, $k = 0..K-1$: $K$ times, one in each stratum $[k/K, (k+1)/K)$
    (shifted by $u$); each is $U(0,1)$ when $u$ is.

    **Returns:** shape `(num_t,)`, in the dtype of `u`.
    """
    u = jnp.asarray(u)
    return jnp.mod(u + jnp.arange(num_t, dtype=u.dtype) / num_t, 1.0)


def _check_num_t(num_t: int) -> int:
    if isinstance(num_t, bool) or not isinstance(num_t, int | np.integer) or num_t < 1:
        raise ValueError(f"num_t must be a positive integer (times per example), got {num_t!r}.")
    return int(num_t)


def _check_num_levels(num_levels: int | None) -> int | None:
    if num_levels is None:
        return None
    if isinstance(num_levels, bool) or not isinstance(num_levels, int | np.integer):
        raise ValueError(f"num_levels must be an integer >= 2 or None, got {num_levels!r}.")
    if num_levels < 2:
        raise ValueError(f"num_levels must be >= 2 (or None for continuous data), got {num_levels}.")
    return int(num_levels)


def negative_elbo_terms(
    eps_model,
    x: Real[ArrayLike, "*dims"],
    t: Float[ArrayLike, " num_t"],
    eps: Float[ArrayLike, " num_t *dims"],
    eps_recon: Float[ArrayLike, "*dims"] | None,
    schedule: AbstractSchedule,
    num_levels: int | None = None,
) -> tuple[Scalar, Scalar, Scalar]:
    r"""The three VDM terms (nats) for one example with explicit noise.

    `x`: levels $0..V-1$ if `num_levels` is given (the model sees `levels_to_unit(x)`),
    else real values. `t` and `eps`: the diffusion term is the mean of
    `vdm_continuous_loss(eps_model, f, t[k], eps[k], schedule)` over $k$. `eps_recon`:
    the noise of $z_0$ for the discrete decoder (`reconstruction_nll`); ignored (may be
    `None`) for continuous data, whose recon term is the exact constant
    $\tfrac D2(1 + \ln 2\pi - \lambda_{\max})$.

    **Returns:** `(recon, prior, diffusion)`, scalars in the dtype of the model data.
    """
    x = jnp.asarray(x)
    if num_levels is None:
        f = x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))
    else:
        f = levels_to_unit(x, num_levels)
    t = jnp.asarray(t, f.dtype)
    eps = jnp.asarray(eps, f.dtype)
    if t.ndim != 1 or eps.shape != (t.shape[0], *f.shape):
        raise ValueError(
            f"t must have shape (num_t,) and eps shape (num_t, *x.shape); got t {t.shape}, "
            f"eps {eps.shape} for x {f.shape}."
        )
    logsnr_max = schedule.logsnr(jnp.zeros((), f.dtype))
    logsnr_min = schedule.logsnr(jnp.ones((), f.dtype))
    if num_levels is None:
        recon = 0.5 * f.size * (1.0 + math.log(2.0 * math.pi) - logsnr_max)
    else:
        if eps_recon is None:
            raise ValueError("the discrete decoder needs eps_recon (standard normal, shaped like x).")
        recon = reconstruction_nll(x, logsnr_max, jnp.asarray(eps_recon, f.dtype), num_levels)
    prior = prior_kl(f, logsnr_min)
    per_t = jax.vmap(lambda t_k, eps_k: vdm_continuous_loss(eps_model, f, t_k, eps_k, schedule))
    diffusion = jnp.mean(per_t(t, eps))
    return recon, prior, diffusion


@eqx.filter_jit
def _batch_terms(eps_model, x, index, key, schedule, num_levels, num_t):
    def one(x, i):
        key_t, key_eps, key_recon = jax.random.split(jax.random.fold_in(key, i), 3)
        dtype = jnp.result_type(float)
        t = stratified_times(jax.random.uniform(key_t, (), dtype), num_t)
        eps = jax.random.normal(key_eps, (num_t, *x.shape), dtype)
        eps_recon = jax.random.normal(key_recon, x.shape, dtype)
        return negative_elbo_terms(eps_model, x, t, eps, eps_recon, schedule, num_levels)

    return jax.vmap(one)(x, index)


@dataclass(frozen=True)
class NegativeELBO:
    """Result of `negative_elbo`: the bound per example in nats and in bits per dimension.

    - `nats`, `bpd`: `Estimate(mean, stderr)` over examples (the standard error covers both
      the spread of the data and the Monte Carlo noise of $t$ and $\\epsilon$);
    - `recon`, `prior`, `diffusion`: mean of each term, nats per example;
    - `per_example`: the bound of every example, nats, shape `(N,)`;
    - `num_dims`: $D$, the number of dimensions of one example.
    """

    nats: Estimate
    bpd: Estimate
    recon: float
    prior: float
    diffusion: float
    per_example: np.ndarray
    num_dims: int

    def to_dict(self) -> dict[str, float]:
        """Scalars for logging: `bpd`, `bpd_stderr`, `nats`, `nats_stderr`, and the terms in bits/dim."""
        scale = 1.0 / (self.num_dims * math.log(2.0))
        return {
            "bpd": self.bpd.mean,
            "bpd_stderr": self.bpd.stderr,
            "nats": self.nats.mean,
            "nats_stderr": self.nats.stderr,
            "recon_bpd": self.recon * scale,
            "prior_bpd": self.prior * scale,
            "diffusion_bpd": self.diffusion * scale,
        }


def negative_elbo(
    eps_model,
    data,
    *,
    key: PRNGKeyArray,
    schedule: AbstractSchedule,
    num_levels: int | None = None,
    num_t: int = 8,
    batch_size: int = 256,
    progress: bool = False,
) -> NegativeELBO:
    r"""Estimate the VDM negative ELBO of every example of `data`, shape `(N, *dims)`.

    `num_levels = V`: `data` holds integer levels and the discrete decoder is used (bits per
    dimension comparable with the literature); `None`: real-valued data and the Gaussian
    decoder (see the module docstring). Example $i$ uses the key
    `jax.random.fold_in(key, i)`, split into (stratum offset $u$, diffusion noise, $z_0$ noise),
    so results do not depend on `batch_size`. Batches run through one `eqx.filter_jit`-ed,
    vmapped function; `progress=True` shows a progress bar.

    **Returns:** a `NegativeELBO`.
    """
    num_levels = _check_num_levels(num_levels)
    num_t = _check_num_t(num_t)
    data = np.asarray(data)
    if data.ndim < 2:
        raise ValueError(f"data must have shape (N, *dims) with N examples, got {data.shape}.")
    if num_levels is not None and (data.min() < 0 or data.max() > num_levels - 1 or np.any(data != np.round(data))):
        raise ValueError(
            f"with num_levels={num_levels} the data must hold integer levels "
            f"0..{num_levels - 1}; got values in [{data.min()}, {data.max()}]. Pass the raw "
            "levels (Dataset.test), or num_levels=None for continuous data."
        )
    if not jnp.issubdtype(data.dtype, jnp.floating):
        data = data.astype(np.float32)

    def run(x, index):
        return _batch_terms(eps_model, x, index, key, schedule, num_levels, num_t)

    recon, prior, diffusion = map_batches(run, (data,), batch_size=batch_size, progress=progress, desc="negative ELBO")
    num_dims = int(np.prod(data.shape[1:]))
    recon, prior, diffusion = (np.asarray(a, np.float64) for a in (recon, prior, diffusion))
    total = recon + prior + diffusion
    bpd = np.asarray(bits_per_dim(recon, prior, diffusion, num_dims), np.float64)
    return NegativeELBO(
        nats=estimate(total),
        bpd=estimate(bpd),
        recon=float(recon.mean()),
        prior=float(prior.mean()),
        diffusion=float(diffusion.mean()),
        per_example=total,
        num_dims=num_dims,
    )


def dataset_bpd(
    eps_model,
    dataset: Dataset,
    *,
    key: PRNGKeyArray,
    schedule: AbstractSchedule,
    split: str = "test",
    num_t: int = 8,
    batch_size: int = 256,
    limit: int | None = None,
    progress: bool = False,
) -> NegativeELBO:
    """`negative_elbo` of a `Dataset` split: its levels with the discrete decoder over
    `dataset.num_levels` for discrete data, its values with the Gaussian decoder otherwise.
    `limit` evaluates only the first `limit` examples.

    **Returns:** a `NegativeELBO` (`.bpd` is the bits per dimension).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    data = getattr(dataset, split)
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit < 1:
            raise ValueError(f"limit must be a positive integer or None, got {limit!r}.")
        data = data[:limit]
    return negative_elbo(
        eps_model,
        data,
        key=key,
        schedule=schedule,
        num_levels=dataset.num_levels,
        num_t=num_t,
        batch_size=batch_size,
        progress=progress,
    )
