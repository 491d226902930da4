r"""Images per second and model-FLOP utilisation (MFU) of the U-Net training step.

The step is the library's own: a config (`configs/digits.yaml`, `configs/cifar10.yaml`) is
loaded and built exactly as `weighted-elbo train` builds it (`eqx_impl.train.loop.build`),
and `run_steps`, the jitted entry point of the training loop, is timed on batches of the
training set, `--steps-per-dispatch k` steps per call (a `lax.scan` when k > 1).

- **build**: seconds of `build` (data set, model, optimiser, initial state); **compile**:
  seconds to lower and compile the step.
- **images/s** $=$ batch size / median seconds per step (after compilation and warm-up).
- **FLOPs per step**: the convolutions and matrix products of the whole step (forward and
  backward), counted from its jaxpr (`benchmarks/flops.py`); XLA's own cost analysis is
  printed beside it, but on a GPU it does not count the cuDNN convolutions.
- **MFU** $=$ (FLOPs per step / seconds per step) / the device's dense peak at the step's
  precision: bf16 for `bfloat16`, TF32 for `tf32`, plain FP32 for `float32`.

    python -m benchmarks.unet_throughput --config configs/cifar10.yaml --precision bfloat16
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.flops import matmul_flops
from eqx_impl.models.count import count_params
from eqx_impl.train.config_io import load_config
from eqx_impl.train.loop import build
from eqx_impl.train.step import lower_steps

# Dense peak TFLOP/s (no 2:4 sparsity) from NVIDIA's data sheets, matched against
# `jax.devices()[0].device_kind` by substring, most specific first.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H100 PCIe": {"bf16": 756.0, "tf32": 378.0, "fp32": 51.2},
    "H100 NVL": {"bf16": 835.0, "tf32": 417.5, "fp32": 60.0},
    "H100": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},  # SXM5 (device kind "NVIDIA H100 80GB HBM3")
    "GH200": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "H200": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},  # SXM
    "A100": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5},  # SXM4 and PCIe
}
PEAK_KEY = {"bfloat16": "bf16", "tf32": "tf32", "float32": "fp32"}


def peak_tflops(device_kind: str, precision: str = "tf32") -> float | None:
    """The dense peak TFLOP/s of `device_kind` at `precision` (`bf16`, `tf32`, `fp32`), or None if unknown."""
    for name, peaks in PEAK_TFLOPS.items():
        if name.lower() in device_kind.lower():
            return peaks[precision]
    return None


@dataclasses.dataclass
class Throughput:
    config: str
    device_kind: str
    backend: str
    precision: str
    batch: int
    steps_per_dispatch: int
    image_shape: tuple[int, ...]
    params: int
    seconds_per_step: float
    flops_per_step: int
    xla_flops_per_step: float | None
    peak_tflops: float | None
    build_seconds: float
    compile_seconds: float

    @property
    def images_per_second(self) -> float:
        return self.batch / self.seconds_per_step

    @property
    def achieved_tflops(self) -> float:
        return self.flops_per_step / self.seconds_per_step / 1e12

    @property
    def mfu(self) -> float | None:
        """Model-FLOP utilisation in [0, 1], or None without a known peak."""
        return None if self.peak_tflops is None else self.achieved_tflops / self.peak_tflops

    def mfu_text(self) -> str:
        if self.mfu is None:
            return f"n/a (no peak known for {self.backend.upper()} '{self.device_kind}')"
        return f"{100 * self.mfu:.1f} % of {self.peak_tflops:g} TFLOP/s ({PEAK_KEY[self.precision]} dense)"

    def summary(self) -> str:
        xla = "n/a" if self.xla_flops_per_step is None else f"{self.xla_flops_per_step / 1e9:.1f}"
        return (
            f"{self.config}: U-Net {self.image_shape}, {self.params:,} parameters, {self.precision}, "
            f"batch {self.batch}, {self.steps_per_dispatch} step(s)/dispatch on {self.device_kind}: "
            f"{1e3 * self.seconds_per_step:.2f} ms/step, {self.images_per_second:,.0f} images/s; "
            f"{self.flops_per_step / 1e9:.1f} GFLOP/step (XLA cost analysis: {xla}), "
            f"{self.achieved_tflops:.1f} TFLOP/s, MFU {self.mfu_text()}; "
            f"build {self.build_seconds:.1f} s, compile {self.compile_seconds:.1f} s"
        )

    def to_dict(self) -> dict:
        extra = {"images_per_second": self.images_per_second, "achieved_tflops": self.achieved_tflops, "mfu": self.mfu}
        return {**dataclasses.asdict(self), **extra}


def _xla_flops(compiled) -> float | None:
    """XLA's FLOP count of a compiled step (a dict, or a list of one), if the backend has one."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # some backends do not implement it
        return None
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    flops = None if cost is None else cost.get("flops")
    return float(flops) if flops is not None and flops > 0 else None


def step_flops(setup, state, data, indices) -> int:
    """Convolution and matmul FLOPs of one training step (forward and backward) of `setup`."""
    one = indices[:1]
    return matmul_flops(lambda s, d, i: setup.trainer.steps(s, d, i), state, data, one)


def measure(
    config_path: str = "configs/digits.yaml",
    *,
    steps: int = 20,
    warmup: int = 3,
    batch: int | None = None,
    precision: str | None = None,
    steps_per_dispatch: int = 1,
    overrides: tuple[str, ...] = (),
) -> Throughput:
    """Time `steps` training steps after `warmup` ones, `steps_per_dispatch` per call.

    **Returns:** a `Throughput`.
    """
    overrides = list(overrides) + [f"train.steps_per_dispatch={steps_per_dispatch}", "train.preflight=false"]
    if batch is not None:
        overrides.append(f"train.batch_size={batch}")
    if precision is not None:
        overrides.append(f"train.precision={precision}")
    t0 = time.perf_counter()
    setup = build(load_config(config_path, overrides))
    state = jax.block_until_ready(setup.initial)
    build_seconds = time.perf_counter() - t0
    batch, k = setup.config.train.batch_size, steps_per_dispatch
    data = jnp.asarray(setup.dataset.model_data("train"))
    rng = np.random.default_rng(0)
    calls = max(1, -(-steps // k))
    warm_calls = max(1, -(-warmup // k))
    indices = [jnp.asarray(rng.integers(0, len(data), (k, batch)), jnp.int32) for _ in range(warm_calls + calls)]

    t0 = time.perf_counter()
    # Compiled once, ahead of time: the computation the training loop's `run_steps` runs.
    compiled = lower_steps(setup.trainer, state, data, indices[0]).compile()
    compile_seconds = time.perf_counter() - t0
    times = []
    for i, idx in enumerate(indices):
        start = time.perf_counter()
        state, metrics = compiled(setup.trainer, state, data, idx)
        jax.block_until_ready(metrics["loss"])
        if i >= warm_calls:
            times.append((time.perf_counter() - start) / k)
    device = jax.devices()[0]
    name = setup.trainer.precision.name
    xla = _xla_flops(compiled.compiled if hasattr(compiled, "compiled") else compiled)
    return Throughput(
        config=config_path,
        device_kind=device.device_kind,
        backend=jax.default_backend(),
        precision=name,
        batch=batch,
        steps_per_dispatch=k,
        image_shape=tuple(int(d) for d in data.shape[1:]),
        params=count_params(state.model),
        seconds_per_step=float(np.median(times)),
        flops_per_step=step_flops(setup, state, data, indices[0]),
        xla_flops_per_step=None if xla is None else xla / k,
        peak_tflops=peak_tflops(device.device_kind, PEAK_KEY[name]),
        build_seconds=build_seconds,
        compile_seconds=compile_seconds,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/digits.yaml")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=None, help="override train.batch_size")
    parser.add_argument("--precision", default=None, help="override train.precision (float32, tf32, bfloat16)")
    parser.add_argument("--steps-per-dispatch", type=int, default=1)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--json", default=None, help="append the result as one JSON line to this file")
    args = parser.parse_args()
    result = measure(
        args.config,
        steps=args.steps,
        warmup=args.warmup,
        batch=args.batch,
        precision=args.precision,
        steps_per_dispatch=args.steps_per_dispatch,
        overrides=tuple(args.set),
    )
    print(result.summary(), flush=True)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result.to_dict()) + "\n")


if __name__ == "__main__":
    main()
