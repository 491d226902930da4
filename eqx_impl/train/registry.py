r"""Names → objects: data sets, networks, weightings and proposals (schedules) from a config.

Everything is built in `eqx_impl` (the pre-flight builds the `reference` twins of these
objects itself). Names are case-insensitive and `_` reads as `-`.

- Weightings: `elbo`, `sigmoid`, `edm`, `eps-cosine`, `exponential`, `indi`, `min-snr`;
  `<name>-monotonic` (or `monotonic-<name>`) is `Monotonic(w)` on the objective's interval
  (e.g. `edm-monotonic`), `<name>-shifted` (or `shifted-<name>`) is `Shifted(w, shift)`
  with `shift` taken from the arguments.
- Schedules: `linear`, `cosine`, `cosine-interpolated`, `ddpm-linear`, `edm-lognormal`,
  `flow-ot` (fixed: $\lambda = \lambda(u)$), `adaptive` (Kingma & Gao's adaptive
  proposal) and `learned` (VDM's monotone network, trained to minimise the variance).
- Models: `mlp` (flattens any data shape) and `unet` (images `(C, H, W)`).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import equinox as eqx
import numpy as np

import eqx_impl as ex
from eqx_impl import data as data_lib
from eqx_impl.models.init import initialise
from eqx_impl.names import normalize_name
from eqx_impl.proposals import AbstractProposal, AdaptiveProposal, FixedProposal, LearnedProposal
from eqx_impl.schedules import DEFAULT_LOGSNR_MAX, DEFAULT_LOGSNR_MIN
from eqx_impl.train.config import Config, ConfigError, DataConfig, ModelConfig, ObjectiveConfig, OptimConfig

__all__ = [
    "SCHEDULES",
    "WEIGHTINGS",
    "Entry",
    "Flatten",
    "NETWORKS",
    "build_dataset",
    "build_model",
    "build_proposal",
    "build_weighting",
    "resolve",
]


def _fixed(schedule, optim: OptimConfig) -> AbstractProposal:
    del optim
    return FixedProposal(schedule)


def _adaptive(adaptive, optim: OptimConfig) -> AbstractProposal:
    del optim
    return AdaptiveProposal(adaptive)


def _learned(learned, optim: OptimConfig) -> AbstractProposal:
    return LearnedProposal(learned, optim.schedule_lr, optim.b1, optim.b2, optim.eps)


@dataclass(frozen=True)
class Entry:
    """One named object: its `eqx_impl` constructor; for a schedule, whether it takes the
    objective's interval (`logsnr_min`, `logsnr_max`) and a `key`, and the proposal that
    wraps it (given the optimiser settings, for a learned schedule's Adam)."""

    eqx: Callable[..., Any]
    takes_range: bool = False
    takes_key: bool = False
    proposal: Callable[[Any, OptimConfig], AbstractProposal] = _fixed

    def accepted(self) -> tuple[str, ...]:
        params = inspect.signature(self.eqx).parameters
        skip = {"self", "key", "logsnr_min", "logsnr_max"}
        return tuple(p for p in params if p not in skip)


WEIGHTINGS: dict[str, Entry] = {
    "elbo": Entry(ex.ELBO),
    "sigmoid": Entry(ex.Sigmoid),
    "edm": Entry(ex.EDM),
    "eps-cosine": Entry(ex.EpsCosine),
    "exponential": Entry(ex.Exponential),
    "indi": Entry(ex.InDI),
    "min-snr": Entry(ex.MinSNR),
}

SCHEDULES: dict[str, Entry] = {
    "linear": Entry(ex.LinearLogSNR, takes_range=True),
    "cosine": Entry(ex.Cosine, takes_range=True),
    "cosine-interpolated": Entry(ex.CosineInterpolated, takes_range=True),
    "ddpm-linear": Entry(ex.DDPMLinear),
    "edm-lognormal": Entry(ex.EDMLogNormal, takes_range=True),
    "flow-ot": Entry(ex.FlowOT, takes_range=True),
    "adaptive": Entry(ex.Adaptive, takes_range=True, proposal=_adaptive),
    "learned": Entry(ex.Learned, takes_range=True, takes_key=True, proposal=_learned),
}


def _known(table: Mapping[str, Entry]) -> str:
    return ", ".join(sorted(table))


def _kwargs(entry: Entry, args: Mapping[str, Any], where: str, what: str) -> dict[str, Any]:
    accepted = entry.accepted()
    unknown = [k for k in args if k not in accepted]
    if unknown:
        hint = ", ".join(accepted) if accepted else "none"
        raise ConfigError(f"{where}: {what} takes no argument {unknown[0]!r}; its arguments are: {hint}.")
    return dict(args)


def _construct(factory, kwargs, where: str, what: str):
    try:
        return factory(**kwargs)
    except (ValueError, TypeError, ArithmeticError, IndexError, KeyError) as err:
        # The constructors check their values; a TypeError or ZeroDivisionError from deeper
        # down still means a badly typed or out-of-range argument in the config.
        raise ConfigError(
            f"{where}: cannot build {what} with {kwargs}: {type(err).__name__}: {err}. Fix or remove "
            "the offending argument (left out, it takes its default)."
        ) from None


# --- weightings ----------------------------------------------------------------------------


def _split_modifier(name: str, modifier: str) -> str | None:
    if name.startswith(modifier + "-"):
        return name[len(modifier) + 1 :]
    if name.endswith("-" + modifier):
        return name[: -len(modifier) - 1]
    return None


def build_weighting(
    name: str,
    args: Mapping[str, Any],
    logsnr_range: tuple[float, float],
    *,
    where: str = "objective.weighting",
):
    """The weighting `name` with arguments `args`; `logsnr_range` is the interval
    `Monotonic` maximises over.

    **Returns:** an `eqx_impl` `AbstractWeighting`.
    """
    name = normalize_name(name)
    args = dict(args)
    inner = _split_modifier(name, "shifted")
    if inner is not None:
        if "shift" not in args:
            raise ConfigError(
                f"{where}: {name!r} needs a 'shift' in objective.weighting_args "
                "(e.g. shift = 2 log(64/d) for the shifted cosine of simple diffusion)."
            )
        shift = args.pop("shift")
        w = build_weighting(inner, args, logsnr_range, where=where)
        # (pyright takes the AbstractVar `kinks`, a property of Shifted, for a constructor field)
        shifted = cast(Callable[..., Any], ex.Shifted)
        return _construct(lambda **kw: shifted(w, **kw), {"shift": shift}, where, name)
    inner = _split_modifier(name, "monotonic")
    if inner is not None:
        w = build_weighting(inner, args, logsnr_range, where=where)
        return ex.Monotonic(w, *logsnr_range)
    if name not in WEIGHTINGS:
        raise ConfigError(
            f"{where}: unknown weighting {name!r}; known: {_known(WEIGHTINGS)} "
            "(add the suffix '-monotonic' or '-shifted' to any of them)."
        )
    entry = WEIGHTINGS[name]
    kwargs = _kwargs(entry, args, where, f"weighting {name!r}")
    return _construct(entry.eqx, kwargs, where, f"weighting {name!r}")


# --- proposals ----------------------------------------------------------------------------


def build_proposal(objective: ObjectiveConfig, optim: OptimConfig, *, key) -> AbstractProposal:
    """The proposal named by `objective.schedule`: the schedule on the objective's interval
    (`null` ends: −20, 20), or on its own for `ddpm-linear` (set by `beta_min`, `beta_max`,
    `t_eps`), wrapped by its `Entry.proposal`; `key` draws a learned schedule.

    **Returns:** an `AbstractProposal`.
    """
    name = normalize_name(objective.schedule)
    entry = SCHEDULES[name]  # the config checked the name
    kwargs = _kwargs(entry, objective.schedule_args, "objective.schedule_args", f"schedule {name!r}")
    if entry.takes_range:
        lo = DEFAULT_LOGSNR_MIN if objective.logsnr_min is None else objective.logsnr_min
        hi = DEFAULT_LOGSNR_MAX if objective.logsnr_max is None else objective.logsnr_max
        kwargs = {"logsnr_min": float(lo), "logsnr_max": float(hi), **kwargs}
    if name == "learned" and not kwargs.get("fixed_endpoints", True):
        raise ConfigError(
            "objective.schedule_args.fixed_endpoints=false: the training loss has no prior or "
            "reconstruction term, so the endpoints of a learned schedule are not identified by "
            "it (VDM trains them on the full bound); keep fixed_endpoints: true and set the "
            "interval with objective.logsnr_min / logsnr_max."
        )
    if entry.takes_key:
        kwargs["key"] = key
    schedule = _construct(entry.eqx, kwargs, "objective.schedule_args", f"schedule {name!r}")
    return entry.proposal(schedule, optim)


def _check_interval(objective: ObjectiveConfig, own: tuple[float, float]) -> None:
    """A schedule that fixes its own interval (`ddpm-linear`) leaves the configured one
    `null` or equal to it."""
    for key, configured, value in zip(
        ("logsnr_min", "logsnr_max"), (objective.logsnr_min, objective.logsnr_max), own, strict=True
    ):
        if configured is not None and not math.isclose(configured, value, rel_tol=1e-9, abs_tol=1e-9):
            raise ConfigError(
                f"objective.{key} = {configured} but schedule {objective.schedule!r} fixes its interval to "
                f"[{own[0]:.6g}, {own[1]:.6g}] through its arguments; set objective.logsnr_min and "
                "objective.logsnr_max to null."
            )


# --- data and models -----------------------------------------------------------------------


def build_dataset(data: DataConfig) -> data_lib.Dataset:
    """`eqx_impl.data.load(data.name, **data.args)`, errors as `ConfigError`.

    **Returns:** a `Dataset`.
    """
    try:
        return data_lib.load(data.name, **data.args)
    except (ValueError, TypeError, ArithmeticError, IndexError, KeyError) as err:
        raise ConfigError(
            f"data: {type(err).__name__}: {err}" if not isinstance(err, ValueError) else f"data: {err}"
        ) from None


class Flatten(eqx.Module):
    """Run a vector network on data of any shape: flatten, apply, reshape back."""

    net: Callable[..., Any]  # a vector network (an eqx.Module)
    shape: tuple[int, ...] = eqx.field(static=True)

    def __call__(self, z, logsnr, *, key=None, label=None):
        extra = {} if label is None else {"label": label}  # an unconditional network takes no label
        out = self.net(z.reshape(-1), logsnr, key=key, **extra)
        return out.reshape(self.shape)


_TUPLE_ARGS = ("channels", "attention_levels", "fourier_exponents")


def _network_args(cls, args: Mapping[str, Any], skip: set[str], name: str) -> dict[str, Any]:
    params = inspect.signature(cls.__init__).parameters
    accepted = [p for p in params if p not in {"self", "key", *skip}]
    unknown = [k for k in args if k not in accepted]
    if unknown:
        raise ConfigError(
            f"model.args: model {name!r} takes no argument {unknown[0]!r}; its arguments are: {', '.join(accepted)}."
        )
    return {k: tuple(v) if k in _TUPLE_ARGS and isinstance(v, list) else v for k, v in args.items()}


def _zero_output(kwargs: Mapping[str, Any], output: Callable):
    """`initialise`'s selector of the network's `output` layer, which starts at zero unless
    the arguments say `zero_init_output=False` (both networks' default is `True`)."""
    return (lambda net: (output(net),)) if kwargs.get("zero_init_output", True) else None


def _mlp(model: ModelConfig, shape: tuple[int, ...], *, key):
    kwargs = _network_args(ex.MLP, model.args, {"data_dim"}, "mlp")
    dim = math.prod(shape)

    def make(**kw):
        return initialise(lambda k: ex.MLP(dim, key=k, **kw), key, zero=_zero_output(kw, lambda n: n.output))

    net = _construct(make, kwargs, "model.args", "mlp")
    return net if len(shape) == 1 else Flatten(net, tuple(shape))


def _unet(model: ModelConfig, shape: tuple[int, ...], *, key):
    if len(shape) != 3:
        raise ConfigError(
            f"model.name: 'unet' needs images of shape (C, H, W), the data has shape {shape}; "
            "use model.name=mlp for vector data."
        )
    kwargs = _network_args(ex.UNet, model.args, {"in_channels"}, "unet")

    def make(**kw):
        return initialise(lambda k: ex.UNet(shape[0], key=k, **kw), key, zero=_zero_output(kw, lambda n: n.conv_out))

    return _construct(make, kwargs, "model.args", "unet")


NETWORKS: dict[str, Callable[..., Any]] = {"mlp": _mlp, "unet": _unet}


def build_model(model: ModelConfig, shape: tuple[int, ...], target: str, *, key) -> ex.EpsModel:
    """The ε-model: the configured network predicting `target`, wrapped in `EpsModel` (which
    converts its prediction to ε̂). The network is built by `models.init.initialise`
    (structure traced abstractly, values drawn on the host): no compilation, well under a
    second for the digits U-Net.

    **Returns:** an `EpsModel`.
    """
    if model.sigma_data is None:
        raise ValueError("build_model: model.sigma_data is null; resolve the config first (registry.resolve).")
    net = NETWORKS[normalize_name(model.name)](model, tuple(shape), key=key)  # the config checked the name
    return ex.EpsModel(net, target, model.sigma_data, model.normalize_input)


def _check_metrics(config: Config, dataset: data_lib.Dataset) -> None:
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


def _check_labels(config: Config, dataset: data_lib.Dataset) -> None:
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


def resolve(config: Config, dataset: data_lib.Dataset, proposal: AbstractProposal) -> Config:
    """Fill in what the config leaves to the data and the proposal: `model.sigma_data`
    (measured on the training set) and the log-SNR interval (the proposal's); check what
    needs the data set (metrics, labels).

    **Returns:** a new `Config` (the one written to the run directory).
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
