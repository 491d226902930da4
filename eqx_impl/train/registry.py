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
import jax
import numpy as np

import eqx_impl as ex
from eqx_impl import data as data_lib
from eqx_impl.models.init import initialise
from eqx_impl.schedules import DEFAULT_LOGSNR_MAX, DEFAULT_LOGSNR_MIN
from eqx_impl.train.config import Config, ConfigError

__all__ = [
    "MODELS",
    "SCHEDULES",
    "WEIGHTINGS",
    "Entry",
    "Flatten",
    "build_dataset",
    "build_model",
    "build_schedule",
    "build_weighting",
    "normalize_name",
    "resolve",
    "schedule_range",
]


@dataclass(frozen=True)
class Entry:
    """One named object: its `eqx_impl` constructor."""

    eqx: Callable[..., Any]
    takes_range: bool = False  # accepts logsnr_min / logsnr_max

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
    "adaptive": Entry(ex.Adaptive, takes_range=True),
    "learned": Entry(ex.Learned, takes_range=True),
}

MODELS = ("mlp", "unet")


def normalize_name(name: str) -> str:
    return str(name).strip().lower().replace("_", "-")


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


# --- schedules -----------------------------------------------------------------------------


def schedule_range(config: Config) -> tuple[float, float]:
    """The effective log-SNR interval $[\\lambda_{\\min}, \\lambda_{\\max}]$ of the objective.

    Schedules with a range take the configured one (defaults −20, 20); `ddpm-linear` fixes
    its own from `beta_min`, `beta_max`, `t_eps`, and a configured range must then be
    left `null` (or equal it).

    **Returns:** `(logsnr_min, logsnr_max)` as floats.
    """
    o = config.objective
    name = normalize_name(o.schedule)
    if name not in SCHEDULES:
        raise ConfigError(f"objective.schedule: unknown schedule {name!r}; known: {_known(SCHEDULES)}.")
    entry = SCHEDULES[name]
    if entry.takes_range:
        lo = DEFAULT_LOGSNR_MIN if o.logsnr_min is None else o.logsnr_min
        hi = DEFAULT_LOGSNR_MAX if o.logsnr_max is None else o.logsnr_max
        return float(lo), float(hi)
    kwargs = _kwargs(entry, o.schedule_args, "objective.schedule_args", f"schedule {name!r}")
    schedule = _construct(entry.eqx, kwargs, "objective.schedule_args", name)
    lo, hi = float(schedule.logsnr_min), float(schedule.logsnr_max)
    for key, configured, own in (("logsnr_min", o.logsnr_min, lo), ("logsnr_max", o.logsnr_max, hi)):
        if configured is not None and not math.isclose(configured, own, rel_tol=1e-9, abs_tol=1e-9):
            raise ConfigError(
                f"objective.{key} = {configured} but schedule {name!r} fixes its interval to "
                f"[{lo:.6g}, {hi:.6g}] through its arguments; set objective.logsnr_min and "
                "objective.logsnr_max to null."
            )
    return lo, hi


def build_schedule(config: Config, *, key=None):
    """The configured proposal: a schedule, `Adaptive` or `Learned` (`key` initialises it).

    **Returns:** the `eqx_impl` object.
    """
    o = config.objective
    name = normalize_name(o.schedule)
    lo, hi = schedule_range(config)
    entry = SCHEDULES[name]
    kwargs = _kwargs(entry, o.schedule_args, "objective.schedule_args", f"schedule {name!r}")
    if entry.takes_range:
        kwargs = {"logsnr_min": lo, "logsnr_max": hi, **kwargs}
    if name == "learned" and not kwargs.get("fixed_endpoints", True):
        raise ConfigError(
            "objective.schedule_args.fixed_endpoints=false: the training loss has no prior or "
            "reconstruction term, so the endpoints of a learned schedule are not identified by "
            "it (VDM trains them on the full bound); keep fixed_endpoints: true and set the "
            "interval with objective.logsnr_min / logsnr_max."
        )
    if name == "learned":
        if key is None:
            raise ValueError("build_schedule: the learned schedule needs key=.")
        kwargs["key"] = key
    return _construct(entry.eqx, kwargs, "objective.schedule_args", f"schedule {name!r}")


# --- data and models -----------------------------------------------------------------------


def build_dataset(config: Config) -> data_lib.Dataset:
    """`eqx_impl.data.load(config.data.name, **config.data.args)`, errors as `ConfigError`.

    **Returns:** a `Dataset`.
    """
    try:
        return data_lib.load(config.data.name, **config.data.args)
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


def build_model(config: Config, shape: tuple[int, ...], sigma_data: float, *, key) -> ex.EpsModel:
    """The ε-model: the configured network predicting `objective.target`, wrapped in
    `EpsModel` (which converts its prediction to ε̂). The network is built by
    `models.init.initialise` (structure traced abstractly, values drawn on the host): no
    compilation, well under a second for the digits U-Net.

    **Returns:** an `EpsModel`.
    """
    m = config.model
    name = normalize_name(m.name)
    if name == "mlp":
        kwargs = _network_args(ex.MLP, m.args, {"data_dim"}, name)
        dim = math.prod(shape)
        net = _construct(
            lambda **kw: initialise(lambda k: ex.MLP(dim, key=k, **kw), key, zero=_zero_output(kw, lambda n: n.output)),
            kwargs,
            "model.args",
            "mlp",
        )
        if len(shape) != 1:
            net = Flatten(net, tuple(shape))
    elif name == "unet":
        if len(shape) != 3:
            raise ConfigError(
                f"model.name: 'unet' needs images of shape (C, H, W), the data has shape {shape}; "
                "use model.name=mlp for vector data."
            )
        kwargs = _network_args(ex.UNet, m.args, {"in_channels"}, name)
        net = _construct(
            lambda **kw: initialise(
                lambda k: ex.UNet(shape[0], key=k, **kw), key, zero=_zero_output(kw, lambda n: n.conv_out)
            ),
            kwargs,
            "model.args",
            "unet",
        )
    else:
        raise ConfigError(f"model.name: unknown model {m.name!r}; known: {', '.join(MODELS)}.")
    target = config.objective.target
    return ex.EpsModel(net, target, sigma_data, m.normalize_input)


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


def resolve(config: Config, dataset: data_lib.Dataset | None = None) -> Config:
    """Fill in what the config leaves to the data and the schedule: `model.sigma_data`
    (measured on the training set) and the effective log-SNR interval. Builds the
    weighting and proposal once, so every name and argument is checked here.

    **Returns:** a new `Config` (the one written to the run directory).
    """
    dataset = build_dataset(config) if dataset is None else dataset
    lo, hi = schedule_range(config)
    sigma_data = config.model.sigma_data
    if sigma_data is None:
        sigma_data = float(dataset.sigma_data)
    objective = dataclasses.replace(config.objective, logsnr_min=lo, logsnr_max=hi)
    model = dataclasses.replace(config.model, sigma_data=sigma_data)
    resolved = dataclasses.replace(config, objective=objective, model=model)
    build_weighting(objective.weighting, objective.weighting_args, (lo, hi))
    if normalize_name(config.objective.schedule) != "learned":
        build_schedule(resolved)  # the constructors check their arguments (`_checks`)
    else:  # shapes only: checks the arguments without drawing (or compiling) anything
        try:
            eqx.filter_eval_shape(lambda k: build_schedule(resolved, key=k), jax.random.key(0))
        except ConfigError as err:  # drop JAX's note about filtered tracebacks
            raise ConfigError(str(err).split("\n-----")[0]) from None
    _check_metrics(config, dataset)
    _check_labels(config, dataset)
    if normalize_name(config.model.name) not in MODELS:
        raise ConfigError(f"model.name: unknown model {config.model.name!r}; known: {', '.join(MODELS)}.")
    return resolved
