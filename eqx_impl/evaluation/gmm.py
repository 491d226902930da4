r"""Evaluation against a known Gaussian mixture (the `gmm` toy): exact NLL under the true
density, and the gap between a model's weighted loss and the Bayes-optimal one.

The Bayes gap uses *common random numbers*: for each example $x$ the same strata of
$t$ (so the same $\lambda$ and $p(\lambda)$) and the same $\epsilon$ serve the model and the
mixture's Bayes-optimal $\hat\epsilon^*$ (`GaussianMixture.eps`), so the per-example difference

$$\Delta(x) = \tfrac12\,\frac{w(\lambda)}{p(\lambda)}\big(\ell_{\mathrm{model}}(\lambda) - \ell^*(\lambda)\big) \ge 0 \text{ in expectation}$$

has far less variance than either loss, and it is exactly 0 for the Bayes-optimal model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

from eqx_impl._typing import PRNGKeyArray
from eqx_impl.analytic import GaussianMixture
from eqx_impl.data.dataset import Dataset
from eqx_impl.evaluation.estimate import Estimate, estimate, map_batches
from eqx_impl.evaluation.likelihood import _check_num_t, stratified_times
from eqx_impl.losses import weighted_loss
from eqx_impl.schedules import AbstractSchedule
from eqx_impl.weightings import AbstractWeighting

__all__ = ["BayesGap", "bayes_gap", "exact_nll", "mixture_from_dataset"]


def mixture_from_dataset(dataset: Dataset, dtype=jnp.float32) -> GaussianMixture:
    """The true density of a data set that records mixture parameters (`load("gmm")`).

    **Returns:** `GaussianMixture(weights, means, stds)` with leaves of `dtype`.
    """
    missing = {"weights", "means", "stds"} - set(dataset.params)
    if missing:
        raise ValueError(
            f"data set {dataset.name!r} has no mixture parameters ({sorted(missing)} missing "
            "from Dataset.params); only the 'gmm' toy has an exact density."
        )
    p = dataset.params
    return GaussianMixture(  # pyright: ignore[reportCallIssue]  # pyright reads the AbstractVar `dim` as an __init__ field
        jnp.asarray(p["weights"], dtype), jnp.asarray(p["means"], dtype), jnp.asarray(p["stds"], dtype)
    )


@eqx.filter_jit
def _log_prob(mixture, x):
    return mixture.log_prob(x)


def exact_nll(mixture: GaussianMixture, x: npt.ArrayLike, *, batch_size: int = 8192) -> Estimate:
    r"""Mean exact negative log-likelihood $-\ln p(x)$ (nats per example) under the mixture.

    Of model samples it measures precision (samples off the modes are penalised; a model
    collapsed onto the modes scores *better* than the data), of held-out data it estimates
    the entropy $H(p)$, the floor for any model's NLL of that data.

    **Returns:** `Estimate(mean, stderr)`.
    """
    x = np.asarray(x, dtype=np.asarray(mixture.means).dtype)
    if x.ndim != 2 or x.shape[1] != mixture.dim:
        raise ValueError(f"x must have shape (N, {mixture.dim}), got {x.shape}.")
    log_p = map_batches(lambda x, _: _log_prob(mixture, x), (x,), batch_size=batch_size)
    return estimate(-np.asarray(log_p, np.float64))


@eqx.filter_jit
def _batch_losses(eps_model, mixture, x, index, key, weighting, schedule, num_t):
    def one(x, i):
        key_t, key_eps = jax.random.split(jax.random.fold_in(key, i))
        t = stratified_times(jax.random.uniform(key_t, (), x.dtype), num_t)
        logsnr = schedule.logsnr(t)
        density = schedule.density(logsnr)
        eps = jax.random.normal(key_eps, (num_t, *x.shape), x.dtype)

        def losses(model):
            per_t = jax.vmap(lambda lam, p, e: weighted_loss(model, x, lam, e, weighting, p))
            return jnp.mean(per_t(logsnr, density, eps))

        return losses(eps_model), losses(mixture.eps)

    return jax.vmap(one)(x, index)


@dataclass(frozen=True)
class BayesGap:
    r"""Result of `bayes_gap` (all in nats per example, under one weighting and proposal).

    - `model`, `optimal`: `Estimate`s of $\mathcal L_w$ for the model and the Bayes-optimal
      $\hat\epsilon^*$; `gap`: of their paired difference;
    - `relative`: $\bar\Delta/\bar{\mathcal L}^*$ with its delta-method standard error
      $\sqrt{\widehat{\mathrm{Var}}(\Delta_i - r\,\mathcal L^*_i)/n}\,/\,\bar{\mathcal L}^*$.
    """

    model: Estimate
    optimal: Estimate
    gap: Estimate
    relative: Estimate

    def to_dict(self) -> dict[str, float]:
        return {
            "model_loss": self.model.mean,
            "model_loss_stderr": self.model.stderr,
            "optimal_loss": self.optimal.mean,
            "optimal_loss_stderr": self.optimal.stderr,
            "gap": self.gap.mean,
            "gap_stderr": self.gap.stderr,
            "relative_gap": self.relative.mean,
            "relative_gap_stderr": self.relative.stderr,
        }


def bayes_gap(
    eps_model,
    mixture: GaussianMixture,
    x: npt.ArrayLike,
    *,
    key: PRNGKeyArray,
    weighting: AbstractWeighting,
    schedule: AbstractSchedule,
    num_t: int = 4,
    batch_size: int = 1024,
    progress: bool = False,
) -> BayesGap:
    r"""Weighted loss of `eps_model` and of the Bayes-optimal model on data `x` `(N, dim)`.

    Per example ($i$: key `fold_in(key, i)`), `num_t` stratified $t_k$ give
    $\lambda_k = \lambda(t_k)$ with proposal density $p(\lambda_k)$ = `schedule.density`, and
    both losses are $\frac1K\sum_k$ `weighted_loss(·, x, λ_k, ε_k, weighting, p(λ_k))` with
    the same $\epsilon_k$ — unbiased for $\mathcal L_w(x) = \tfrac12\int w\,\mathbb E\ell\,d\lambda$
    whatever the schedule. Use the training weighting and schedule to compare with the
    training loss.

    **Returns:** a `BayesGap`.
    """
    num_t = _check_num_t(num_t)
    x = np.asarray(x, dtype=np.asarray(mixture.means).dtype)
    if x.ndim != 2 or x.shape[1] != mixture.dim:
        raise ValueError(f"x must have shape (N, {mixture.dim}), got {x.shape}.")

    def run(x, index):
        return _batch_losses(eps_model, mixture, x, index, key, weighting, schedule, num_t)

    model, optimal = map_batches(run, (x,), batch_size=batch_size, progress=progress, desc="Bayes gap")
    model, optimal = np.asarray(model, np.float64), np.asarray(optimal, np.float64)
    diff = model - optimal
    ratio = diff.mean() / optimal.mean()
    if len(x) > 1:
        ratio_se = np.std(diff - ratio * optimal, ddof=1) / math.sqrt(len(x)) / abs(optimal.mean())
    else:
        ratio_se = math.nan
    return BayesGap(
        model=estimate(model),
        optimal=estimate(optimal),
        gap=estimate(diff),
        relative=Estimate(float(ratio), float(ratio_se)),
    )
