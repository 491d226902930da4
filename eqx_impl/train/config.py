r"""Run configuration: nested dataclasses loaded from YAML/JSON and overridden by `--set`.

```yaml
data:      {name: digits, args: {seed: 0}}
model:     {name: unet, args: {channels: [32, 64]}, sigma_data: null}
objective: {weighting: sigmoid, weighting_args: {bias: 2.0}, schedule: adaptive,
            schedule_args: {}, target: eps, logsnr_min: -15.0, logsnr_max: 15.0}
optim:     {lr: 2.0e-3, warmup_steps: 200, grad_clip: 1.0, ema_decay: 0.999, ...}
train:     {steps: 4000, batch_size: 128, seed: 0, steps_per_dispatch: 10, run_dir: runs/x}
eval:      {num_samples: 100, sampler: heun, sampling_steps: 32, metrics: [bpd, fd]}
```

Every section and field is checked: unknown keys, badly typed or out-of-range values and
names missing from the tables of `eqx_impl.names` raise `ConfigError` naming the dotted key
(`train.steps`) and what would be accepted, all before JAX loads. Names follow the spelling
rule of `names.normalize_name`; targets, precisions, samplers and metrics are stored in
their canonical spelling. The arguments of data sets, models, weightings and schedules are
checked by `registry`, which builds them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml

from eqx_impl import names
from eqx_impl.names import METRICS, PRECISIONS, SAMPLERS, TARGETS

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "load_config",
    "parse_override",
]


class ConfigError(ValueError):
    """A configuration file, key or value that cannot be used; the message says how to fix it."""


@dataclass
class DataConfig:
    """`name`: a data set of `eqx_impl.data.available()`; `args`: keyword arguments of its builder."""

    name: str = "gmm"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    """`name`: `mlp` or `unet`; `args`: keyword arguments of the network (besides the key and
    the data shape). `sigma_data`: EDM's data scale for targets `F` and input normalisation
    (`null`: measured on the training set)."""

    name: str = "mlp"
    args: dict[str, Any] = field(default_factory=dict)
    sigma_data: float | None = None
    normalize_input: bool | None = None


@dataclass
class ObjectiveConfig:
    r"""The weighted loss $\tfrac12\,w(\lambda)/p(\lambda)\,\ell$: weighting $w$ by name and
    parameters, proposal $p$ (a schedule, `adaptive` or `learned`), the network's target, and
    the log-SNR interval (`null`: the schedule's own; required for `adaptive`/`learned`).
    `label_dropout`: for a class-conditional model (`model.args.num_classes`), the
    probability that a training label is replaced by the null label (classifier-free
    guidance); unused otherwise."""

    weighting: str = "sigmoid"
    weighting_args: dict[str, Any] = field(default_factory=dict)
    schedule: str = "cosine"
    schedule_args: dict[str, Any] = field(default_factory=dict)
    target: str = "eps"
    logsnr_min: float | None = -15.0
    logsnr_max: float | None = 15.0
    label_dropout: float = 0.1


@dataclass
class OptimConfig:
    """AdamW with linear warm-up to `lr` (then constant or cosine decay to `lr·final_lr_ratio`),
    global-norm clipping at `grad_clip` (`null`: none), weight decay on matrices only, and an
    EMA of the weights. `schedule_lr` is Adam's rate for a `learned` schedule."""

    lr: float = 1e-3
    warmup_steps: int = 100
    lr_decay: str = "constant"
    final_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.99
    eps: float = 1e-8
    grad_clip: float | None = 1.0
    ema_decay: float = 0.999
    schedule_lr: float = 1e-3


@dataclass
class TrainConfig:
    """Steps, batch size and seed; `steps_per_dispatch` steps run in one `lax.scan` per call.
    Metrics every `log_every` steps, checkpoints every `checkpoint_every` (the last
    `keep_checkpoints` kept) under `run_dir`. `data_parallel`: split each batch over all
    devices (of all processes), the state replicated (`batch_size` must be a multiple of
    the device count; see `parallel.py`). `nonfinite`: a step whose loss or gradient is
    NaN/inf changes no parameter; `stop` then saves the last good state and raises
    `TrainingDiverged`, `skip` counts it (`skipped` in `metrics.jsonl`) and goes on.
    `precision`: how the network computes (`eqx_impl.models.precision`): `float32`, `tf32`
    (float32 storage, TF32 tensor-core matmuls) or `bfloat16` (bf16 convolutions and
    matmuls; float32 master weights, optimiser state, EMA, loss and all λ math); `auto` is
    `bfloat16` on a GPU/TPU and `float32` on a CPU. Sampling and evaluation follow it."""

    steps: int = 1000
    batch_size: int = 128
    seed: int = 0
    steps_per_dispatch: int = 1
    data_parallel: bool = False
    log_every: int = 100
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    run_dir: str = "runs/default"
    preflight: bool = True
    nonfinite: str = "stop"
    precision: str = "auto"


@dataclass
class EvalConfig:
    """After training (and in `evaluate`/`sample`): `num_samples` samples with `sampler`
    (`heun`, `euler`, `stochastic`, `dpm_2`, `dpmpp_2m`, `dpmpp_2m_sde`, `ancestral`, `ddim`)
    in `sampling_steps` steps, and the
    `metrics` (`bpd`, `fd`, `gmm_nll`, `bayes_gap`, `sliced_wasserstein`, `mmd`, `nll_ode`,
    `loss_profile`). `unroll`
    unrolls the sampler's loop (`null`: for a `unet`, whose convolutions XLA:CPU runs many
    times slower inside a loop). `nll_ode` (probability-flow ODE likelihood) integrates with RK4
    in `ode_steps` steps; `ode_probes`: Hutchinson probes per example (`null`: the exact
    divergence for data of at most 32 dimensions, one probe otherwise). `guidance`: the
    classifier-free guidance scale $w$ of a class-conditional model (`null`: 1, the
    conditional model unguided; 0: the unconditional one)."""

    num_samples: int = 64
    sampler: str = "heun"
    sampling_steps: int = 32
    unroll: bool | None = None
    metrics: list[str] = field(default_factory=list)
    bpd_examples: int | None = None
    bpd_num_t: int = 4
    ode_steps: int = 64
    ode_probes: int | None = None
    batch_size: int = 256
    seed: int = 0
    guidance: float | None = None


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        spell_names(self)
        check_names(self)
        check_values(self)


LR_DECAYS = ("constant", "cosine")
NONFINITE_POLICIES = ("skip", "stop")


# --- conversion of values ------------------------------------------------------------------


def _describe(tp) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(value, tp, where: str):
    """`value` as type `tp` (the field's annotation), or `ConfigError`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where} must be {_describe(tp)}, got {value!r}.")
    if origin is list:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigError(f"{where} must be {_describe(tp)}, got {value!r}.")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping of keyword arguments, got {value!r}.")
        return {str(k): v for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{where} must be {_describe(tp)}, got {value!r}.")


def _section_from_dict(cls, values, where: str):
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {values!r}.")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ConfigError(f"Unknown key {where}.{unknown[0]}; the keys of {where} are: {', '.join(names)}.")
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    return cls(**kwargs)


# Every section field has a default_factory (a section class), so no _MISSING_TYPE is left.
_SECTIONS: dict[str, Callable[[], Any]] = {
    f.name: cast(Callable[[], Any], f.default_factory) for f in dataclasses.fields(Config)
}


def config_from_dict(values: Mapping[str, Any]) -> Config:
    """Build and check a `Config` from nested mappings (missing keys take the defaults).

    **Returns:** a `Config`.
    """
    if not isinstance(values, Mapping):
        raise ConfigError(f"A configuration must be a mapping of sections, got {values!r}.")
    unknown = [k for k in values if k not in _SECTIONS]
    if unknown:
        raise ConfigError(f"Unknown section {unknown[0]!r}; the sections are: {', '.join(_SECTIONS)}.")
    sections = {
        name: _section_from_dict(type(factory()), values.get(name), name) for name, factory in _SECTIONS.items()
    }
    return Config(**sections)


def config_to_dict(config: Config) -> dict[str, Any]:
    """**Returns:** the configuration as nested plain dicts (YAML/JSON ready)."""
    return dataclasses.asdict(config)


# --- value checks --------------------------------------------------------------------------


def _require(ok: bool, where: str, value, what: str):
    if not ok:
        raise ConfigError(f"{where} must be {what}, got {value!r}.")


def spell_names(config: Config) -> None:
    """Write the target, precision, sampler and metrics in their canonical spelling
    (`names.canonical_name`: `dpm-2` → `dpm_2`), in place; unknown names stay as they are
    for `check_values` to report."""
    o, t, e = config.objective, config.train, config.eval
    o.target = names.canonical_name(o.target, TARGETS) or o.target
    t.precision = names.canonical_name(t.precision, PRECISIONS) or t.precision
    e.sampler = names.canonical_name(e.sampler, SAMPLERS) or e.sampler
    e.metrics = [names.canonical_name(m, METRICS) or m for m in e.metrics]


def _require_name(known: bool, where: str, what: str, value, table: tuple[str, ...], hint: str = ""):
    if not known:
        raise ConfigError(f"{where}: unknown {what} {value!r}; known: {', '.join(sorted(table))}{hint}.")


def check_names(config: Config) -> None:
    """The weighting, schedule, data set and model are in the tables of `eqx_impl.names`;
    raises `ConfigError` listing the known names otherwise."""
    o = config.objective
    hint = " (add the suffix '-monotonic' or '-shifted' to any of them)"
    _require_name(
        names.weighting_base(o.weighting) is not None, "objective.weighting", "weighting", o.weighting,
        names.WEIGHTINGS, hint,
    )  # fmt: skip
    known = names.canonical_name(o.schedule, names.SCHEDULES) is not None
    _require_name(known, "objective.schedule", "schedule", o.schedule, names.SCHEDULES)
    known = names.canonical_name(config.data.name, names.DATASETS) is not None
    _require_name(known, "data.name", "data set", config.data.name, names.DATASETS)
    known = names.canonical_name(config.model.name, names.MODELS) is not None
    _require_name(known, "model.name", "model", config.model.name, names.MODELS)


def check_values(config: Config) -> None:
    """Range checks that the types alone do not express; raises `ConfigError`."""
    o, opt, t, e = config.objective, config.optim, config.train, config.eval
    _require(o.target in TARGETS, "objective.target", o.target, f"one of {', '.join(TARGETS)}")
    for name in ("logsnr_min", "logsnr_max"):
        v = getattr(o, name)
        _require(v is None or math.isfinite(v), f"objective.{name}", v, "a finite number or null")
    if o.logsnr_min is not None and o.logsnr_max is not None:
        _require(
            o.logsnr_min < o.logsnr_max,
            "objective.logsnr_min",
            o.logsnr_min,
            f"below objective.logsnr_max = {o.logsnr_max}",
        )
    _require(0 <= o.label_dropout < 1, "objective.label_dropout", o.label_dropout, "in [0, 1)")
    s = config.model.sigma_data
    _require(s is None or (math.isfinite(s) and s > 0), "model.sigma_data", s, "> 0 or null")
    for name in ("lr", "schedule_lr", "eps"):
        v = getattr(opt, name)
        _require(math.isfinite(v) and v > 0, f"optim.{name}", v, "a positive number")
    _require(opt.warmup_steps >= 0, "optim.warmup_steps", opt.warmup_steps, ">= 0")
    _require(opt.lr_decay in LR_DECAYS, "optim.lr_decay", opt.lr_decay, f"one of {LR_DECAYS}")
    _require(0 <= opt.final_lr_ratio <= 1, "optim.final_lr_ratio", opt.final_lr_ratio, "in [0, 1]")
    _require(opt.weight_decay >= 0, "optim.weight_decay", opt.weight_decay, ">= 0")
    for name in ("b1", "b2", "ema_decay"):
        v = getattr(opt, name)
        _require(0 <= v < 1, f"optim.{name}", v, "in [0, 1)")
    clip = opt.grad_clip
    _require(clip is None or clip > 0, "optim.grad_clip", clip, "a positive number or null")
    for name in ("steps", "batch_size", "steps_per_dispatch", "log_every"):
        v = getattr(t, name)
        _require(v >= 1, f"train.{name}", v, "an integer >= 1")
    _require(t.checkpoint_every >= 1, "train.checkpoint_every", t.checkpoint_every, ">= 1")
    _require(t.keep_checkpoints >= 1, "train.keep_checkpoints", t.keep_checkpoints, ">= 1")
    _require(t.seed >= 0, "train.seed", t.seed, "an integer >= 0")
    _require(bool(t.run_dir), "train.run_dir", t.run_dir, "a non-empty path")
    _require(
        t.nonfinite in NONFINITE_POLICIES,
        "train.nonfinite",
        t.nonfinite,
        "skip (skip and count steps with a NaN/inf loss or gradient) or stop (checkpoint and stop)",
    )
    _require(
        t.precision in PRECISIONS,
        "train.precision",
        t.precision,
        "auto (bfloat16 on GPU/TPU, float32 on CPU), float32, tf32 or bfloat16",
    )
    _require(e.num_samples >= 1, "eval.num_samples", e.num_samples, "an integer >= 1")
    _require(e.sampler in SAMPLERS, "eval.sampler", e.sampler, f"one of {', '.join(SAMPLERS)}")
    _require(e.sampling_steps >= 2, "eval.sampling_steps", e.sampling_steps, "an integer >= 2")
    for i, m in enumerate(e.metrics):
        _require(m in METRICS, f"eval.metrics[{i}]", m, f"one of {', '.join(METRICS)}")
    be = e.bpd_examples
    _require(be is None or be >= 1, "eval.bpd_examples", be, "an integer >= 1 or null")
    _require(e.bpd_num_t >= 1, "eval.bpd_num_t", e.bpd_num_t, "an integer >= 1")
    _require(e.ode_steps >= 1, "eval.ode_steps", e.ode_steps, "an integer >= 1")
    op = e.ode_probes
    _require(op is None or op >= 1, "eval.ode_probes", op, "an integer >= 1 or null (auto)")
    _require(e.batch_size >= 1, "eval.batch_size", e.batch_size, "an integer >= 1")
    _require(e.seed >= 0, "eval.seed", e.seed, "an integer >= 0")
    g = e.guidance
    _require(g is None or math.isfinite(g), "eval.guidance", g, "a finite number or null")
    _require(
        g is None or config.model.args.get("num_classes") is not None,
        "eval.guidance",
        g,
        "null for an unconditional model (set model.args.num_classes to train a class-conditional one)",
    )


# --- files and overrides -------------------------------------------------------------------


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Parse a YAML (`.yaml`/`.yml`) or JSON (`.json`) file into a mapping.

    **Returns:** a dict (empty for an empty file).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"Config file {str(path)!r} not found"
            + ("" if not path.parent.is_dir() else f" (the folder {str(path.parent)!r} exists)")
            + "; pass --config with the path of a YAML or JSON file, e.g. configs/digits.yaml."
        )
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            values = json.loads(text) if text.strip() else {}
        else:
            values = yaml.safe_load(text) or {}
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise ConfigError(f"Cannot parse config file {str(path)!r}: {err}") from None
    if not isinstance(values, Mapping):
        raise ConfigError(
            f"Config file {str(path)!r} must hold a mapping of sections "
            f"({', '.join(_SECTIONS)}), got {type(values).__name__}."
        )
    return dict(values)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`"a.b.c=value"` → `(["a", "b", "c"], value)`, the value read as YAML (`3`, `1.5`,
    `true`, `null`, `[32, 64]`, `{bias: 3}`; anything else stays a string).

    **Returns:** `(key path, value)`.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            f"Override {text!r} must look like section.key=value "
            "(e.g. train.steps=2000 or objective.weighting_args.bias=3)."
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(values: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply `section.key=value` overrides to nested mappings (copied, not modified).

    `section.key` must name a known field; deeper keys set entries of a mapping field
    (`objective.weighting_args.bias=3`).

    **Returns:** the new nested dict.
    """
    result = json.loads(json.dumps(values, default=str)) if values else {}
    for text in overrides:
        path, value = parse_override(text)
        section = path[0]
        if section not in _SECTIONS:
            raise ConfigError(
                f"Override {text!r}: unknown section {section!r}; the sections are: {', '.join(_SECTIONS)}."
            )
        names = [f.name for f in dataclasses.fields(type(_SECTIONS[section]()))]
        if len(path) < 2 or path[1] not in names:
            what = path[1] if len(path) > 1 else "(none)"
            raise ConfigError(
                f"Override {text!r}: unknown key {section}.{what}; the keys of {section} are: {', '.join(names)}."
            )
        node = result.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"Override {text!r}: {section} is not a mapping in the file.")
        for i, part in enumerate(path[1:-1], start=1):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"Override {text!r}: {'.'.join(path[: i + 1])} is {child!r}, not a mapping.")
            node = child
        node[path[-1]] = value
    return result


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read a config file (or start from the defaults), apply overrides, check everything.

    **Returns:** a `Config`.
    """
    values = read_mapping(path) if path is not None else {}
    return config_from_dict(apply_overrides(values, overrides))


def dump_config(config: Config, path: str | Path) -> None:
    """Write `config` as YAML (keys in declaration order), atomically."""
    from eqx_impl.train.files import atomic_write_text

    text = yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=None)
    atomic_write_text(Path(path), text)
