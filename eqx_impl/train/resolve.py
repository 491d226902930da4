"""Resolve a config against its data set and proposal: fill in what it leaves to them
(`model.sigma_data`, the log-SNR interval) and check what only they can tell (metrics,
labels, a schedule's own interval). The resolved config is the one a run directory keeps."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from eqx_impl.data import Dataset
from eqx_impl.proposals import AbstractProposal
from eqx_impl.train.config import Config, ObjectiveConfig
from eqx_impl.train.errors import ConfigError

__all__ = ["resolve"]


def resolve(config: Config, dataset: Dataset, proposal: AbstractProposal) -> Config:
    """`config` with `model.sigma_data` measured on the training set (unless set) and the
    log-SNR interval of `proposal` (built from `config.objective`).

    **Returns:** a new `Config`.
    """
    lo, hi = (float(v) for v in proposal.logsnr_range)
    _check_interval(config.objective, (lo, hi))
    _check_metrics(config, dataset)
    _check_labels(config, dataset)
    sigma_data = config.model.sigma_data
    if sigma_data is None:
        sigma_data = float(dataset.sigma_data)
    return dataclasses.replace(
        config,
        objective=dataclasses.replace(config.objective, logsnr_min=lo, logsnr_max=hi),
        model=dataclasses.replace(config.model, sigma_data=sigma_data),
    )


def _check_interval(objective: ObjectiveConfig, own: tuple[float, float]) -> None:
    """A schedule that fixes its own interval (`ddpm-linear`) leaves the configured one
    `null` or equal to it."""
    configured = (objective.logsnr_min, objective.logsnr_max)
    for key, value, actual in zip(("logsnr_min", "logsnr_max"), configured, own, strict=True):
        if value is not None and not math.isclose(value, actual, rel_tol=1e-9, abs_tol=1e-9):
            raise ConfigError(
                f"objective.{key} = {value} but schedule {objective.schedule!r} fixes its interval to "
                f"[{own[0]:.6g}, {own[1]:.6g}] through its arguments; set objective.logsnr_min and "
                "objective.logsnr_max to null."
            )


def _check_metrics(config: Config, dataset: Dataset) -> None:
    """Fail before training, not after, when a metric cannot be computed on this data set."""
    for name in config.eval.metrics:
        if name == "fd" and dataset.train_labels is None:
            raise ConfigError(
                f"eval.metrics: 'fd' needs a labelled data set to train its classifier "
                f"(digits, mnist, cifar10); {dataset.name!r} has no labels."
            )
        if name in ("gmm_nll", "bayes_gap") and not {"weights", "means", "stds"} <= set(dataset.params):
            raise ConfigError(
                f"eval.metrics: {name!r} needs the exact mixture density of the 'gmm' data set; "
                f"{dataset.name!r} has none."
            )


def _check_labels(config: Config, dataset: Dataset) -> None:
    """A class-conditional model (`model.args.num_classes`) needs a labelled data set whose
    labels lie in `0..num_classes-1`."""
    num_classes = config.model.args.get("num_classes")
    if num_classes is None:
        return
    if dataset.train_labels is None:
        raise ConfigError(
            f"model.args.num_classes={num_classes}: a class-conditional model needs labels, and the "
            f"data set {dataset.name!r} has none; use a labelled one (digits, mnist, cifar10) or "
            "remove model.args.num_classes to train an unconditional model."
        )
    top = int(np.max(dataset.train_labels))
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= top:
        raise ConfigError(
            f"model.args.num_classes must be an integer > {top}, the largest label of {dataset.name!r} "
            f"(its labels are 0..{top}), got {num_classes!r}."
        )
