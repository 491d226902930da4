r"""After training (and for the `sample` / `evaluate` commands): samples, the PNG grid and the
configured metrics, computed with `eqx_impl.evaluation` on the EMA model.

Metrics (`eval.metrics`):

| name | what | data |
|---|---|---|
| `bpd` | VDM bound in bits/dim on the test split (`dataset_bpd`) | any |
| `fd` | Fréchet distance of classifier features, samples vs test set | labelled (digits, mnist, cifar10) |
| `gmm_nll` | exact NLL of the samples (and of the test set) under the true mixture | gmm |
| `bayes_gap` | weighted loss of the model minus the Bayes-optimal one | gmm |
| `sliced_wasserstein`, `mmd` | two-sample distances, samples vs test set | any |
| `nll_ode` | probability-flow ODE likelihood in bits/dim on the test split (`ode_nll`; levels dequantised uniformly), $\sigma \in [e^{-\lambda_{\max}/2}, e^{-\lambda_{\min}/2}]$ | any |
| `loss_profile` | $\ell(\lambda)$ on the test split at `PROFILE_POINTS` levels over the training interval (`loss_profile`): the ELBO integrand, the run's $\tfrac12 w\ell$, their densities over $\lambda$; curves under `loss_profile`, and `loss_profile.png` in `out_dir` | any |

The bound uses the training interval $[\lambda_{\min}, \lambda_{\max}]$ with `Cosine(λ_min, λ_max)`
as its importance distribution (any choice is unbiased; one for every run).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np

from eqx_impl import evaluation as ev
from eqx_impl.data import Dataset
from eqx_impl.evaluation.loss_profile import loss_profile, plot_loss_profile
from eqx_impl.evaluation.ode_likelihood import ode_nll
from eqx_impl.models.precision import Precision
from eqx_impl.proposals import AbstractProposal
from eqx_impl.schedules import AbstractSchedule, Cosine
from eqx_impl.train.config import Config
from eqx_impl.train.registry import normalize_name

__all__ = ["draw_samples", "evaluate_model", "evaluation_schedule", "save_samples"]

GRID_MAX = 100
PROFILE_POINTS = 64  # λ grid of the loss_profile metric (trapezoid bias ~h², h = (λmax-λmin)/63)


def evaluation_schedule(config: Config) -> AbstractSchedule:
    """The importance distribution of the bound over the training interval: its estimate is
    unbiased whatever the distribution, so every run uses the same one.

    **Returns:** `Cosine(λ_min, λ_max)`.
    """
    # A resolved config (registry.resolve) has the interval filled in; pyright sees `float | None`.
    return Cosine(config.objective.logsnr_min, config.objective.logsnr_max)  # pyright: ignore[reportArgumentType]


def draw_samples(
    config: Config,
    model,
    shape: tuple[int, ...],
    *,
    num: int | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    seed: int | None = None,
    progress: bool = False,
    labels: np.ndarray | None = None,
    guidance: float | None = None,
) -> np.ndarray:
    r"""Samples of the (EMA) ε-model with `eval.sampler` over the training interval:
    $\sigma_{\min} = e^{-\lambda_{\max}/2}$, $\sigma_{\max} = \min(80, e^{-\lambda_{\min}/2})$.
    `labels` (one class per sample) for a class-conditional model, guided with scale
    `guidance` (default `eval.guidance`; see `evaluation.generate`); without them a
    conditional model samples with the null label (unconditionally).

    The network runs under `train.precision` (`models.precision`).

    **Returns:** float32 `(num, *shape)` in model space.
    """
    precision = Precision.create(config.train.precision)
    with precision.context():
        return _draw_samples(
            config, precision.cast(model), shape, num, sampler, steps, seed, progress, labels, guidance
        )


def _draw_samples(config, model, shape, num, sampler, steps, seed, progress, labels=None, guidance=None) -> np.ndarray:
    e = config.eval
    if labels is not None and guidance is None:
        guidance = e.guidance
    lo, hi = config.objective.logsnr_min, config.objective.logsnr_max
    seed = e.seed if seed is None else seed
    return ev.generate(
        eqx.nn.inference_mode(model),
        e.num_samples if num is None else num,
        tuple(shape),
        key=jax.random.key(seed),
        sampler=e.sampler if sampler is None else sampler,
        steps=e.sampling_steps if steps is None else steps,
        sigma_min=math.exp(-0.5 * hi),
        sigma_max=min(80.0, math.exp(-0.5 * lo)),
        sigma_data=float(config.model.sigma_data or 0.0),
        batch_size=e.batch_size,
        progress=progress,
        unroll=_unroll(config),
        labels=labels,
        guidance=guidance,
    )


def _unroll(config: Config) -> bool:
    if config.eval.unroll is not None:
        return config.eval.unroll
    return normalize_name(config.model.name) == "unet"


def save_samples(samples: np.ndarray, dataset: Dataset, path: str | Path) -> Path:
    """A PNG grid of (up to 100) image samples, or a scatter plot over the test set for 2-D
    data. **Returns:** the path written."""
    samples = np.asarray(samples)
    if samples.ndim == 2 and samples.shape[1] == 2:
        return ev.save_grid(samples, path, reference=dataset.model_data("test"), title=dataset.name)
    return ev.save_grid(samples[:GRID_MAX], path, num_levels=dataset.num_levels)


def evaluate_model(
    config: Config,
    dataset: Dataset,
    model,
    weighting,
    proposal: AbstractProposal | None,  # unused: the bound's estimate does not depend on it
    proposal_state,
    *,
    samples: np.ndarray | None = None,
    metrics: list[str] | None = None,
    progress: bool = False,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Compute `metrics` (default `eval.metrics`) for `model`, its network run under
    `train.precision`; `samples` are drawn if a metric needs them and none are given.
    `out_dir`: where metrics with a plot write it (`loss_profile.png`); `None`: no plots.

    **Returns:** a flat dict of floats (e.g. `bpd`, `bpd_stderr`, `fd`); `loss_profile` adds
    its curves as a dict of lists under the key `loss_profile`.
    """
    precision = Precision.create(config.train.precision)
    with precision.context():
        model = precision.cast(model)
        del proposal, proposal_state  # the bound's estimate does not depend on them (see evaluation_schedule)
        return _evaluate_model(config, dataset, model, weighting, samples, metrics, progress, out_dir)


def _evaluate_model(config, dataset, model, weighting, samples, metrics, progress, out_dir=None):
    e = config.eval
    metrics = list(e.metrics if metrics is None else metrics)
    model = eqx.nn.inference_mode(model)
    key = jax.random.key(e.seed)
    k_bpd, k_gap, k_sw = jax.random.split(jax.random.fold_in(key, 1), 3)
    k_ode = jax.random.fold_in(key, 2)
    k_profile = jax.random.fold_in(key, 3)
    needs_samples = {"fd", "gmm_nll", "sliced_wasserstein", "mmd"}
    if samples is None and needs_samples & set(metrics):
        samples = draw_samples(config, model, dataset.shape, progress=progress)
    test = dataset.model_data("test")
    results: dict[str, Any] = {}
    schedule = evaluation_schedule(config)
    for name in metrics:
        if name == "bpd":
            nelbo = ev.dataset_bpd(
                model,
                dataset,
                key=k_bpd,
                schedule=schedule,
                num_t=e.bpd_num_t,
                batch_size=e.batch_size,
                limit=e.bpd_examples,
                progress=progress,
            )
            results.update(nelbo.to_dict())
        elif name == "fd":
            assert samples is not None  # drawn above for the metrics that need them
            data_seed = int(config.data.args.get("seed", 0))
            classifier = ev.load_classifier(
                ev.ClassifierConfig(dataset=dataset.name, data_seed=data_seed), progress=progress
            )
            results["fd"] = ev.frechet_classifier_distance(classifier, samples, test)
            results["fd_num_samples"] = int(len(samples))
        elif name == "gmm_nll":
            assert samples is not None
            mixture = ev.mixture_from_dataset(dataset)
            nll = ev.exact_nll(mixture, samples)
            results["gmm_nll_samples"] = nll.mean
            results["gmm_nll_samples_stderr"] = nll.stderr
            results["gmm_nll_test"] = ev.exact_nll(mixture, test).mean
        elif name == "bayes_gap":
            mixture = ev.mixture_from_dataset(dataset)
            gap = ev.bayes_gap(
                model,
                mixture,
                test,
                key=k_gap,
                weighting=weighting,
                schedule=schedule,
                batch_size=e.batch_size,
                progress=progress,
            )
            results.update({f"bayes_{k}": v for k, v in gap.to_dict().items()})
        elif name in ("sliced_wasserstein", "mmd"):
            assert samples is not None
            n = min(len(samples), len(test))
            x, y = np.asarray(samples[:n]).reshape(n, -1), np.asarray(test[:n]).reshape(n, -1)
            if name == "mmd":
                results["mmd2"] = ev.mmd2(x, y)
            else:
                results["sliced_wasserstein"] = ev.sliced_wasserstein(x, y, key=k_sw)
        elif name == "nll_ode":
            data = dataset.test if dataset.is_discrete else test
            nll = ode_nll(
                model,
                data if e.bpd_examples is None else data[: e.bpd_examples],
                key=k_ode,
                sigma_min=math.exp(-0.5 * config.objective.logsnr_max),
                sigma_max=math.exp(-0.5 * config.objective.logsnr_min),
                num_levels=dataset.num_levels,
                num_steps=e.ode_steps,
                num_probes=e.ode_probes,
                batch_size=e.batch_size,
                progress=progress,
            )
            results.update(nll.to_dict())
        elif name == "loss_profile":
            profile = loss_profile(
                model,
                test if e.bpd_examples is None else test[: e.bpd_examples],
                key=k_profile,
                logsnr_min=config.objective.logsnr_min,
                logsnr_max=config.objective.logsnr_max,
                weighting=weighting,
                num_logsnr=PROFILE_POINTS,
                batch_size=e.batch_size,
                progress=progress,
            )
            results.update(profile.to_dict())
            results["loss_profile"] = profile.curves()
            if out_dir is not None:
                png = plot_loss_profile(
                    profile, Path(out_dir) / "loss_profile.png", weighting_name=config.objective.weighting
                )
                results["loss_profile_png"] = str(png)
        else:
            raise ValueError(f"unknown metric {name!r}")
    return results
