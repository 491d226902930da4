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
from collections.abc import Callable
from dataclasses import dataclass
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
from eqx_impl.names import normalize_name
from eqx_impl.schedules import AbstractSchedule, Cosine
from eqx_impl.train.config import Config

__all__ = ["draw_samples", "evaluate_model", "evaluation_schedule", "save_samples"]

GRID_MAX = 100
PROFILE_POINTS = 64  # λ grid of the loss_profile metric (trapezoid bias ~h², h = (λmax-λmin)/63)


def evaluation_schedule(config: Config) -> AbstractSchedule:
    """The importance distribution of the bound over the training interval: its estimate is
    unbiased whatever the distribution, so every run uses the same one.

    **Returns:** `Cosine(λ_min, λ_max)`.
    """
    return Cosine(*config.objective.interval)


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
    lo, hi = config.objective.interval
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
        return _evaluate_model(config, dataset, model, weighting, samples, metrics, progress, out_dir)


@dataclass
class _Context:
    """What every metric reads: the run, the (EMA, inference-mode) model, the samples (drawn
    once for the metrics that need them), the test split and one key per metric."""

    config: Config
    dataset: Dataset
    model: Any
    weighting: Any
    samples: np.ndarray | None
    test: np.ndarray
    key: jax.Array
    progress: bool
    out_dir: Path | None

    def key_for(self, name: str) -> jax.Array:
        """The metric's own key: the streams of the earlier single-key layout."""
        k_bpd, k_gap, k_sw = jax.random.split(jax.random.fold_in(self.key, 1), 3)
        return {
            "bpd": k_bpd,
            "bayes_gap": k_gap,
            "sliced_wasserstein": k_sw,
            "nll_ode": jax.random.fold_in(self.key, 2),
            "loss_profile": jax.random.fold_in(self.key, 3),
        }[name]

    @property
    def interval(self) -> tuple[float, float]:
        """The training interval $[\\lambda_{\\min}, \\lambda_{\\max}]$ (filled in by `resolve`)."""
        return self.config.objective.interval

    def limited(self, data):
        """`data` cut to `eval.bpd_examples` (all of it when null)."""
        n = self.config.eval.bpd_examples
        return data if n is None else data[:n]


def _bpd(c: _Context) -> dict:
    e = c.config.eval
    nelbo = ev.dataset_bpd(
        c.model,
        c.dataset,
        key=c.key_for("bpd"),
        schedule=evaluation_schedule(c.config),
        num_t=e.bpd_num_t,
        batch_size=e.batch_size,
        limit=e.bpd_examples,
        progress=c.progress,
    )
    return nelbo.to_dict()


def _fd(c: _Context) -> dict:
    assert c.samples is not None  # drawn for the metrics in NEEDS_SAMPLES
    data_seed = int(c.config.data.args.get("seed", 0))
    classifier = ev.load_classifier(
        ev.ClassifierConfig(dataset=c.dataset.name, data_seed=data_seed), progress=c.progress
    )
    return {"fd": ev.frechet_classifier_distance(classifier, c.samples, c.test), "fd_num_samples": int(len(c.samples))}


def _gmm_nll(c: _Context) -> dict:
    assert c.samples is not None
    mixture = ev.mixture_from_dataset(c.dataset)
    nll = ev.exact_nll(mixture, c.samples)
    return {
        "gmm_nll_samples": nll.mean,
        "gmm_nll_samples_stderr": nll.stderr,
        "gmm_nll_test": ev.exact_nll(mixture, c.test).mean,
    }


def _bayes_gap(c: _Context) -> dict:
    gap = ev.bayes_gap(
        c.model,
        ev.mixture_from_dataset(c.dataset),
        c.test,
        key=c.key_for("bayes_gap"),
        weighting=c.weighting,
        schedule=evaluation_schedule(c.config),
        batch_size=c.config.eval.batch_size,
        progress=c.progress,
    )
    return {f"bayes_{k}": v for k, v in gap.to_dict().items()}


def _two_sample(c: _Context) -> tuple[np.ndarray, np.ndarray]:
    assert c.samples is not None
    n = min(len(c.samples), len(c.test))
    return np.asarray(c.samples[:n]).reshape(n, -1), np.asarray(c.test[:n]).reshape(n, -1)


def _sliced_wasserstein(c: _Context) -> dict:
    x, y = _two_sample(c)
    return {"sliced_wasserstein": ev.sliced_wasserstein(x, y, key=c.key_for("sliced_wasserstein"))}


def _mmd(c: _Context) -> dict:
    return {"mmd2": ev.mmd2(*_two_sample(c))}


def _nll_ode(c: _Context) -> dict:
    e, (lo, hi) = c.config.eval, c.interval
    data = c.dataset.test if c.dataset.is_discrete else c.test
    nll = ode_nll(
        c.model,
        c.limited(data),
        key=c.key_for("nll_ode"),
        sigma_min=math.exp(-0.5 * hi),
        sigma_max=math.exp(-0.5 * lo),
        num_levels=c.dataset.num_levels,
        num_steps=e.ode_steps,
        num_probes=e.ode_probes,
        batch_size=e.batch_size,
        progress=c.progress,
    )
    return nll.to_dict()


def _loss_profile(c: _Context) -> dict:
    (lo, hi), o = c.interval, c.config.objective
    profile = loss_profile(
        c.model,
        c.limited(c.test),
        key=c.key_for("loss_profile"),
        logsnr_min=lo,
        logsnr_max=hi,
        weighting=c.weighting,
        num_logsnr=PROFILE_POINTS,
        batch_size=c.config.eval.batch_size,
        progress=c.progress,
    )
    results = {**profile.to_dict(), "loss_profile": profile.curves()}
    if c.out_dir is not None:
        png = plot_loss_profile(profile, Path(c.out_dir) / "loss_profile.png", weighting_name=o.weighting)
        results["loss_profile_png"] = str(png)
    return results


# The metrics by name: the keys are `eqx_impl.names.METRICS` (tests/test_names.py keeps them equal).
METRIC_FUNCTIONS: dict[str, Callable[[_Context], dict]] = {
    "bpd": _bpd,
    "fd": _fd,
    "gmm_nll": _gmm_nll,
    "bayes_gap": _bayes_gap,
    "sliced_wasserstein": _sliced_wasserstein,
    "mmd": _mmd,
    "nll_ode": _nll_ode,
    "loss_profile": _loss_profile,
}
NEEDS_SAMPLES = {"fd", "gmm_nll", "sliced_wasserstein", "mmd"}


def _evaluate_model(config, dataset, model, weighting, samples, metrics, progress, out_dir=None):
    metrics = list(config.eval.metrics if metrics is None else metrics)
    unknown = [name for name in metrics if name not in METRIC_FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; the metrics are: {', '.join(METRIC_FUNCTIONS)}.")
    model = eqx.nn.inference_mode(model)
    if samples is None and NEEDS_SAMPLES & set(metrics):
        samples = draw_samples(config, model, dataset.shape, progress=progress)
    context = _Context(
        config,
        dataset,
        model,
        weighting,
        samples,
        dataset.model_data("test"),
        jax.random.key(config.eval.seed),
        progress,
        out_dir,
    )
    results: dict[str, Any] = {}
    for name in metrics:
        results.update(METRIC_FUNCTIONS[name](context))
    return results
