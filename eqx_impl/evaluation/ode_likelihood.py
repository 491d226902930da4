r"""Negative log-likelihood of a data set through the probability-flow ODE, in bits per dimension.

For each example, `eqx_impl.ode_likelihood` integrates $dx/ds = x - D(x; e^s)$ from
$\sigma_{\min}$ to $\sigma_{\max}$ with the model's denoiser $D$ (`denoiser_from_eps`) and returns
$\ln p_{\sigma_{\min}}(x)$ with the prior $\mathcal N(0, \sigma_{\max}^2 I)$ (Song et al. 2021;
`docs/theory/ode-likelihood.md`).

- **Continuous data** (`num_levels=None`, float arrays): bits/dim $= -\ln p(x)/(D\ln 2)$.
- **Discrete data** (`num_levels = V`, integer levels $0..V-1$): uniform dequantisation
  $y = 2(x + u)/V - 1$, $u \sim U[0,1)^D$ (one draw per example), and
  bits/dim $= -(\ln p(y) + D\ln\tfrac2V)/(D\ln 2)$, an upper bound on $-\log_2 P(x)/D$ on the
  same footing as the VDM bound of `dataset_bpd`.

The divergence is exact for at most `EXACT_MAX_DIM` dimensions, else Hutchinson's estimate
with `num_probes` Rademacher probes per example (fixed along the path): unbiased, and its
standard deviation enters the reported standard error with the spread of the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from eqx_impl._typing import PRNGKeyArray
from eqx_impl.edm import denoiser_from_eps
from eqx_impl.evaluation.estimate import Estimate, estimate, map_batches
from eqx_impl.ode_likelihood import dequantize, ode_bits_per_dim, ode_likelihood

__all__ = ["EXACT_MAX_DIM", "ODENegativeLogLikelihood", "ode_nll"]

EXACT_MAX_DIM = 32


@dataclass(frozen=True)
class ODENegativeLogLikelihood:
    """Result of `ode_nll`.

    - `nats`, `bpd`: `Estimate(mean, stderr)` over examples of $-\\ln p$ (of the dequantised
      point for discrete data, without the bin volume) and of the bits per dimension;
    - `per_example`: bits per dimension of every example, shape `(N,)`;
    - `num_dims`, `num_levels`, `solver`, `num_steps`, `num_probes` (0: exact trace).
    """

    nats: Estimate
    bpd: Estimate
    per_example: np.ndarray
    num_dims: int
    num_levels: int | None
    solver: str
    num_steps: int
    num_probes: int

    def to_dict(self) -> dict[str, float]:
        """Scalars for logging: `nll_ode_bpd`, `nll_ode_bpd_stderr`, `nll_ode_nats`, `nll_ode_nats_stderr`, `nll_ode_probes`."""
        return {
            "nll_ode_bpd": self.bpd.mean,
            "nll_ode_bpd_stderr": self.bpd.stderr,
            "nll_ode_nats": self.nats.mean,
            "nll_ode_nats_stderr": self.nats.stderr,
            "nll_ode_probes": float(self.num_probes),
        }


@eqx.filter_jit
def _batch_log_prob(eps_model, x, index, key, num_levels, sigmas, solver, num_steps, num_probes):
    denoiser = denoiser_from_eps(eps_model)
    dtype = jnp.result_type(float)

    def one(x, i):
        key_u, key_probes = jax.random.split(jax.random.fold_in(key, i))
        if num_levels is None:
            y = x.astype(dtype)
        else:
            y = dequantize(x, jax.random.uniform(key_u, x.shape, dtype), num_levels)
        probes = None
        if num_probes:
            probes = jax.random.rademacher(key_probes, (num_probes, *x.shape), dtype)
        result = ode_likelihood(
            denoiser,
            y,
            sigma_min=sigmas[0],
            sigma_max=sigmas[1],
            num_steps=num_steps,
            solver=solver,
            probes=probes,
        )
        return result.log_prob, ode_bits_per_dim(result.log_prob, x.size, num_levels)

    return jax.vmap(one)(x, index)


def _check_data(data, num_levels) -> np.ndarray:
    data = np.asarray(data)
    if data.ndim < 2:
        raise ValueError(f"data must have shape (N, *dims) with N examples, got {data.shape}.")
    if num_levels is None:
        if not np.issubdtype(data.dtype, np.floating):
            raise ValueError(
                f"data hold discrete values (dtype {data.dtype}) but no dequantisation is set: a "
                "density is only defined for continuous values. Pass num_levels=V (the number "
                "of levels, e.g. dataset.num_levels) to dequantise uniformly, or float data in "
                "model space for a continuous density."
            )
        return data
    if isinstance(num_levels, bool) or not isinstance(num_levels, int | np.integer) or num_levels < 2:
        raise ValueError(f"num_levels must be an integer >= 2 or None, got {num_levels!r}.")
    if data.min() < 0 or data.max() > num_levels - 1 or np.any(data != np.round(data)):
        raise ValueError(
            f"with num_levels={num_levels} the data must hold integer levels 0..{num_levels - 1} "
            f"(they are dequantised here); got values in [{data.min()}, {data.max()}]. Pass the "
            "raw levels (Dataset.test), or num_levels=None for continuous data."
        )
    return data.astype(np.int32)


def ode_nll(
    eps_model,
    data,
    *,
    key: PRNGKeyArray,
    sigma_min: float,
    sigma_max: float,
    num_levels: int | None = None,
    solver: str = "rk4",
    num_steps: int = 64,
    num_probes: int | None = None,
    batch_size: int = 64,
    progress: bool = False,
) -> ODENegativeLogLikelihood:
    r"""Probability-flow ODE negative log-likelihood of every example of `data`, shape `(N, *dims)`.

    `eps_model(z, logsnr) -> ε̂` (one example). `num_levels = V`: `data` holds integer levels,
    dequantised uniformly; `None`: `data` holds real values in model space (integer data
    without `num_levels` is an error). `num_probes=None` takes the exact trace for at most
    `EXACT_MAX_DIM` dimensions and one Rademacher probe otherwise; an integer $M \ge 1$ always
    uses $M$ probes. Example $i$ draws its dequantisation noise and probes from
    `jax.random.fold_in(key, i)`, so results do not depend on `batch_size`.

    **Returns:** an `ODENegativeLogLikelihood` (`.bpd` in bits per dimension).
    """
    data = _check_data(data, num_levels)
    num_levels = None if num_levels is None else int(num_levels)
    num_dims = int(np.prod(data.shape[1:]))
    if num_probes is None:
        num_probes = 0 if num_dims <= EXACT_MAX_DIM else 1
    elif isinstance(num_probes, bool) or not isinstance(num_probes, int | np.integer) or num_probes < 1:
        raise ValueError(f"num_probes must be a positive integer or None (auto), got {num_probes!r}.")
    sigmas = (float(sigma_min), float(sigma_max))
    if not (math.isfinite(sigmas[0]) and math.isfinite(sigmas[1]) and 0 < sigmas[0] < sigmas[1]):
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigmas[0]!r}, {sigmas[1]!r}.")

    def run(x, index):
        return _batch_log_prob(eps_model, x, index, key, num_levels, sigmas, solver, int(num_steps), int(num_probes))

    log_prob, bpd = map_batches(run, (data,), batch_size=batch_size, progress=progress, desc="ODE likelihood")
    log_prob, bpd = np.asarray(log_prob, np.float64), np.asarray(bpd, np.float64)
    return ODENegativeLogLikelihood(
        nats=estimate(-log_prob),
        bpd=estimate(bpd),
        per_example=bpd,
        num_dims=num_dims,
        num_levels=num_levels,
        solver=solver,
        num_steps=int(num_steps),
        num_probes=int(num_probes),
    )
