r"""Run configuration: frozen dataclasses, one per section (read from YAML/JSON files and
`--set` overrides by `config_io`); each section checks its own values and builds its objects.

```yaml
data:      {name: digits, args: {seed: 0}}
model:     {name: unet, args: {channels: [32, 64]}, sigma_data: null}
objective: {weighting: sigmoid, weighting_args: {bias: 2.0}, schedule: adaptive,
            schedule_args: {}, target: eps, logsnr_min: -15.0, logsnr_max: 15.0}
optim:     {lr: 2.0e-3, warmup_steps: 200, grad_clip: 1.0, ema_decay: 0.999, ...}
train:     {steps: 4000, batch_size: 128, seed: 0, steps_per_dispatch: 10, run_dir: runs/x}
eval:      {num_samples: 100, sampler: heun, sampling_steps: 32, metrics: [bpd, fd]}
```

| section | checks | builds (once, in `loop.build`) |
|---|---|---|
| `DataConfig` | the name | `build()`: the `Dataset` |
| `ModelConfig` | the name, `sigma_data` | `build(shape, target, key=)`: the `EpsModel` |
| `ObjectiveConfig` | names, target, interval | `build_proposal(optim, key=)`, `build_weighting()` |
| `OptimConfig` | rates, moments, clipping | (`optim.model_optimizer(config.optim, steps)`, cached) |
| `TrainConfig` | counts, policies | |
| `EvalConfig` | sampler, metrics, counts | |

Every section and field is checked when it is made: unknown keys, badly typed or
out-of-range values and names missing from the tables of `eqx_impl.names` raise
`ConfigError` naming the dotted key (`train.steps`) and what would be accepted, all before
JAX loads (the build methods import it when called). Names follow the spelling rule of
`names.normalize_name`; targets, precisions, samplers and metrics are stored in their
canonical spelling. The arguments of data sets, models, weightings and schedules are
checked by their constructors, through `registry`, when the objects are built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eqx_impl import names
from eqx_impl.names import METRICS, PRECISIONS, SAMPLERS, TARGETS
from eqx_impl.train.errors import ConfigError

if TYPE_CHECKING:  # the build methods import them when called: loading a config needs no JAX
    from eqx_impl.data import Dataset
    from eqx_impl.models.parameterization import EpsModel
    from eqx_impl.proposals import AbstractProposal
    from eqx_impl.weightings import AbstractWeighting

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "TrainConfig",
]


LR_DECAYS = ("constant", "cosine")
NONFINITE_POLICIES = ("skip", "stop")


def _require(ok: bool, where: str, value, what: str):
    if not ok:
        raise ConfigError(f"{where} must be {what}, got {value!r}.")


def _require_name(known: bool, where: str, what: str, value, table: tuple[str, ...], hint: str = ""):
    if not known:
        raise ConfigError(f"{where}: unknown {what} {value!r}; known: {', '.join(sorted(table))}{hint}.")


def _respell(section, name: str, table: tuple[str, ...]) -> None:
    """Store field `name` of the frozen `section` in its canonical spelling (`dpm-2` →
    `dpm_2`); an unknown name stays as it is for the section's check to report."""
    value = getattr(section, name)
    object.__setattr__(section, name, names.canonical_name(value, table) or value)


@dataclass(frozen=True)
class DataConfig:
    """`name`: a data set of `eqx_impl.data.available()`; `args`: keyword arguments of its builder."""

    name: str = "gmm"
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        known = names.canonical_name(self.name, names.DATASETS) is not None
        _require_name(known, "data.name", "data set", self.name, names.DATASETS)

    def build(self) -> Dataset:
        """**Returns:** the `Dataset` (`eqx_impl.data.load(name, **args)`; its errors as `ConfigError`)."""
        from eqx_impl.train import registry

        return registry.build_dataset(self.name, self.args)


@dataclass(frozen=True)
class ModelConfig:
    """`name`: `mlp` or `unet`; `args`: keyword arguments of the network (besides the key and
    the data shape). `sigma_data`: EDM's data scale for targets `F` and input normalisation
    (`null`: measured on the training set)."""

    name: str = "mlp"
    args: dict[str, Any] = field(default_factory=dict)
    sigma_data: float | None = None
    normalize_input: bool | None = None

    def __post_init__(self):
        known = names.canonical_name(self.name, names.MODELS) is not None
        _require_name(known, "model.name", "model", self.name, names.MODELS)
        s = self.sigma_data
        _require(s is None or (math.isfinite(s) and s > 0), "model.sigma_data", s, "> 0 or null")

    def build(self, shape: tuple[int, ...], target: str, *, key) -> EpsModel:
        """The network for data of `shape` predicting `target`, in `EpsModel` (which turns
        its prediction into ε̂); needs `sigma_data` (`resolve.resolve` fills it in).

        **Returns:** an `EpsModel`.
        """
        from eqx_impl.train import registry

        if self.sigma_data is None:
            raise ValueError("ModelConfig.build: sigma_data is null; resolve the config first (resolve.resolve).")
        return registry.build_model(
            self.name, self.args, tuple(shape), target, self.sigma_data, self.normalize_input, key=key
        )


@dataclass(frozen=True)
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

    def __post_init__(self):
        _respell(self, "target", TARGETS)
        hint = " (add the suffix '-monotonic' or '-shifted' to any of them)"
        known = names.weighting_base(self.weighting) is not None
        _require_name(known, "objective.weighting", "weighting", self.weighting, names.WEIGHTINGS, hint)
        known = names.canonical_name(self.schedule, names.SCHEDULES) is not None
        _require_name(known, "objective.schedule", "schedule", self.schedule, names.SCHEDULES)
        _require(self.target in TARGETS, "objective.target", self.target, f"one of {', '.join(TARGETS)}")
        lo, hi = self.logsnr_min, self.logsnr_max
        _require(lo is None or math.isfinite(lo), "objective.logsnr_min", lo, "a finite number or null")
        _require(hi is None or math.isfinite(hi), "objective.logsnr_max", hi, "a finite number or null")
        if lo is not None and hi is not None:
            _require(lo < hi, "objective.logsnr_min", lo, f"below objective.logsnr_max = {hi}")
        _require(0 <= self.label_dropout < 1, "objective.label_dropout", self.label_dropout, "in [0, 1)")

    @property
    def interval(self) -> tuple[float, float]:
        """$[\\lambda_{\\min}, \\lambda_{\\max}]$ of a resolved objective (`resolve.resolve`
        fills it in from the proposal). **Returns:** two floats."""
        if self.logsnr_min is None or self.logsnr_max is None:
            raise ValueError("ObjectiveConfig.interval: resolve the config first (resolve.resolve).")
        return self.logsnr_min, self.logsnr_max

    def build_proposal(self, optim: OptimConfig, *, key) -> AbstractProposal:
        """The proposal $p(\\lambda)$ named by `schedule` (a learned schedule drawn with
        `key`, trained by Adam with `optim`'s `schedule_lr`, `b1`, `b2`, `eps`).

        **Returns:** an `AbstractProposal`; its `logsnr_range` is the objective's interval.
        """
        from eqx_impl.train import registry

        interval = (self.logsnr_min, self.logsnr_max)
        return registry.build_proposal(self.schedule, self.schedule_args, interval, optim.schedule_adam, key=key)

    def build_weighting(self) -> AbstractWeighting:
        """The weighting $w(\\lambda)$ (a `-monotonic` one made monotone on `interval`).

        **Returns:** an `AbstractWeighting`.
        """
        from eqx_impl.train import registry

        return registry.build_weighting(self.weighting, self.weighting_args, self.interval)


@dataclass(frozen=True)
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

    def __post_init__(self):
        for name in ("lr", "schedule_lr", "eps"):
            v = getattr(self, name)
            _require(math.isfinite(v) and v > 0, f"optim.{name}", v, "a positive number")
        _require(self.warmup_steps >= 0, "optim.warmup_steps", self.warmup_steps, ">= 0")
        _require(self.lr_decay in LR_DECAYS, "optim.lr_decay", self.lr_decay, f"one of {LR_DECAYS}")
        _require(0 <= self.final_lr_ratio <= 1, "optim.final_lr_ratio", self.final_lr_ratio, "in [0, 1]")
        _require(self.weight_decay >= 0, "optim.weight_decay", self.weight_decay, ">= 0")
        for name in ("b1", "b2", "ema_decay"):
            v = getattr(self, name)
            _require(0 <= v < 1, f"optim.{name}", v, "in [0, 1)")
        clip = self.grad_clip
        _require(clip is None or clip > 0, "optim.grad_clip", clip, "a positive number or null")

    @property
    def schedule_adam(self) -> dict[str, float]:
        """Adam's settings for a learned schedule: `lr` (`schedule_lr`), `b1`, `b2`, `eps`."""
        return {"lr": self.schedule_lr, "b1": self.b1, "b2": self.b2, "eps": self.eps}


@dataclass(frozen=True)
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

    def __post_init__(self):
        _respell(self, "precision", PRECISIONS)
        for name in ("steps", "batch_size", "steps_per_dispatch", "log_every", "checkpoint_every", "keep_checkpoints"):
            v = getattr(self, name)
            _require(v >= 1, f"train.{name}", v, "an integer >= 1")
        _require(self.seed >= 0, "train.seed", self.seed, "an integer >= 0")
        _require(bool(self.run_dir), "train.run_dir", self.run_dir, "a non-empty path")
        policies = "skip (skip and count steps with a NaN/inf loss or gradient) or stop (checkpoint and stop)"
        _require(self.nonfinite in NONFINITE_POLICIES, "train.nonfinite", self.nonfinite, policies)
        precisions = "auto (bfloat16 on GPU/TPU, float32 on CPU), float32, tf32 or bfloat16"
        _require(self.precision in PRECISIONS, "train.precision", self.precision, precisions)


@dataclass(frozen=True)
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

    def __post_init__(self):
        _respell(self, "sampler", SAMPLERS)
        object.__setattr__(self, "metrics", [names.canonical_name(m, METRICS) or m for m in self.metrics])
        _require(self.sampler in SAMPLERS, "eval.sampler", self.sampler, f"one of {', '.join(SAMPLERS)}")
        for i, m in enumerate(self.metrics):
            _require(m in METRICS, f"eval.metrics[{i}]", m, f"one of {', '.join(METRICS)}")
        _require(self.sampling_steps >= 2, "eval.sampling_steps", self.sampling_steps, "an integer >= 2")
        for name in ("num_samples", "bpd_num_t", "ode_steps", "batch_size"):
            v = getattr(self, name)
            _require(v >= 1, f"eval.{name}", v, "an integer >= 1")
        be, op = self.bpd_examples, self.ode_probes
        _require(be is None or be >= 1, "eval.bpd_examples", be, "an integer >= 1 or null")
        _require(op is None or op >= 1, "eval.ode_probes", op, "an integer >= 1 or null (auto)")
        _require(self.seed >= 0, "eval.seed", self.seed, "an integer >= 0")
        g = self.guidance
        _require(g is None or math.isfinite(g), "eval.guidance", g, "a finite number or null")


@dataclass(frozen=True)
class Config:
    """The six sections; `guidance` needs a class-conditional model (checked here, across sections)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        g = self.eval.guidance
        _require(
            g is None or self.model.args.get("num_classes") is not None,
            "eval.guidance",
            g,
            "null for an unconditional model (set model.args.num_classes to train a class-conditional one)",
        )
