r"""Names → objects: data sets, networks, weightings and proposals (schedules), built from a
name and its arguments (the config's sections call these builders; this module does not read
configs). Constructor errors come back as `ConfigError` naming the config key.

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

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import equinox as eqx

import eqx_impl as ex
from eqx_impl import data as data_lib
from eqx_impl.models.init import initialise
from eqx_impl.names import normalize_name
from eqx_impl.proposals import AbstractProposal, AdaptiveProposal, FixedProposal, LearnedProposal
from eqx_impl.schedules import DEFAULT_LOGSNR_MAX, DEFAULT_LOGSNR_MIN
from eqx_impl.train.errors import ConfigError

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
]


def _fixed(schedule, **adam: float) -> AbstractProposal:
    del adam
    return FixedProposal(schedule)


def _adaptive(adaptive, **adam: float) -> AbstractProposal:
    del adam
    return AdaptiveProposal(adaptive)


def _learned(learned, *, lr: float, b1: float, b2: float, eps: float) -> AbstractProposal:
    return LearnedProposal(learned, lr, b1, b2, eps)


@dataclass(frozen=True)
class Entry:
    """One named object: its `eqx_impl` constructor; for a schedule, whether it takes the
    objective's interval (`logsnr_min`, `logsnr_max`) and a `key`, and the proposal that
    wraps it (given Adam's `lr`, `b1`, `b2`, `eps`, which a learned schedule trains with)."""

    eqx: Callable[..., Any]
    takes_range: bool = False
    takes_key: bool = False
    proposal: Callable[..., AbstractProposal] = _fixed

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


def build_proposal(
    name: str,
    args: Mapping[str, Any],
    interval: tuple[float | None, float | None],
    adam: Mapping[str, float],
    *,
    key,
) -> AbstractProposal:
    """The proposal of schedule `name` with arguments `args`: on `interval` (`None` ends:
    −20, 20), or on its own for `ddpm-linear` (set by `beta_min`, `beta_max`, `t_eps`),
    wrapped by its `Entry.proposal` (a learned one trains with Adam's settings `adam`);
    `key` draws a learned schedule.

    **Returns:** an `AbstractProposal`.
    """
    name = normalize_name(name)
    entry = SCHEDULES[name]  # the config checked the name
    kwargs = _kwargs(entry, args, "objective.schedule_args", f"schedule {name!r}")
    if entry.takes_range:
        lo = DEFAULT_LOGSNR_MIN if interval[0] is None else interval[0]
        hi = DEFAULT_LOGSNR_MAX if interval[1] is None else interval[1]
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
    return entry.proposal(schedule, **adam)


# --- data and models -----------------------------------------------------------------------


def build_dataset(name: str, args: Mapping[str, Any]) -> data_lib.Dataset:
    """`eqx_impl.data.load(name, **args)`, errors as `ConfigError`.

    **Returns:** a `Dataset`.
    """
    try:
        return data_lib.load(name, **args)
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


def _mlp(args: Mapping[str, Any], shape: tuple[int, ...], *, key):
    kwargs = _network_args(ex.MLP, args, {"data_dim"}, "mlp")
    dim = math.prod(shape)

    def make(**kw):
        return initialise(lambda k: ex.MLP(dim, key=k, **kw), key, zero=_zero_output(kw, lambda n: n.output))

    net = _construct(make, kwargs, "model.args", "mlp")
    return net if len(shape) == 1 else Flatten(net, tuple(shape))


def _unet(args: Mapping[str, Any], shape: tuple[int, ...], *, key):
    if len(shape) != 3:
        raise ConfigError(
            f"model.name: 'unet' needs images of shape (C, H, W), the data has shape {shape}; "
            "use model.name=mlp for vector data."
        )
    kwargs = _network_args(ex.UNet, args, {"in_channels"}, "unet")

    def make(**kw):
        return initialise(lambda k: ex.UNet(shape[0], key=k, **kw), key, zero=_zero_output(kw, lambda n: n.conv_out))

    return _construct(make, kwargs, "model.args", "unet")


NETWORKS: dict[str, Callable[..., Any]] = {"mlp": _mlp, "unet": _unet}


def build_model(
    name: str,
    args: Mapping[str, Any],
    shape: tuple[int, ...],
    target: str,
    sigma_data: float,
    normalize_input: bool | None,
    *,
    key,
) -> ex.EpsModel:
    """The ε-model: network `name` with arguments `args` for data of `shape`, predicting
    `target`, wrapped in `EpsModel` (which converts its prediction to ε̂). The network is
    built by `models.init.initialise` (structure traced abstractly, values drawn on the
    host): no compilation, well under a second for the digits U-Net.

    **Returns:** an `EpsModel`.
    """
    net = NETWORKS[normalize_name(name)](args, tuple(shape), key=key)  # the config checked the name
    return ex.EpsModel(net, target, sigma_data, normalize_input)
