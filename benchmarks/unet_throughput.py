r"""Images per second and model-FLOP utilisation (MFU) of the U-Net training step.

The step is the library's own: `configs/digits.yaml` is loaded and built exactly as
`weighted-elbo train` builds it (`eqx_impl.train.loop.build`: U-Net, Sigmoid(2) weighting,
adaptive schedule, AdamW, EMA), and `run_steps` — the jitted entry point the training loop
calls — is timed one step per dispatch on batches of the training set.

- **images/s** $=$ batch size / median seconds per step (after compilation and warm-up).
- **FLOPs per step** from XLA's cost analysis of the compiled step
  (`run_steps.lower(...).compile().cost_analysis()["flops"]`: forward, backward,
  optimiser and EMA; a multiply-add counts 2).
- **MFU** $=$ (FLOPs per step / seconds per step) / the device's peak, from `PEAK_TFLOPS`
  (dense, no sparsity). The model is float32; under JAX's default matmul precision XLA runs
  float32 convolutions and matmuls on the tensor cores as TF32 on Ampere and later, so
  MFU is quoted against the dense **TF32** peak (the bf16 and plain-float32 peaks are listed
  for reference). No peak is known for CPUs: there MFU is "n/a".

    python -m benchmarks.unet_throughput [--steps 20 --batch 64 --config configs/digits.yaml]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from eqx_impl.models.count import count_params
from eqx_impl.train.config import load_config
from eqx_impl.train.loop import build
from eqx_impl.train.step import run_steps

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
MFU_PRECISION = "tf32"


def peak_tflops(device_kind: str, precision: str = MFU_PRECISION) -> float | None:
    """The dense peak TFLOP/s of `device_kind` at `precision` (`bf16`, `tf32`, `fp32`), or None if unknown."""
    for name, peaks in PEAK_TFLOPS.items():
        if name.lower() in device_kind.lower():
            return peaks[precision]
    return None


@dataclasses.dataclass
class Throughput:
    device_kind: str
    backend: str
    batch: int
    image_shape: tuple[int, ...]
    params: int
    seconds_per_step: float
    flops_per_step: float | None
    peak_tflops: float | None
    compile_seconds: float

    @property
    def images_per_second(self) -> float:
        return self.batch / self.seconds_per_step

    @property
    def achieved_tflops(self) -> float | None:
        return None if self.flops_per_step is None else self.flops_per_step / self.seconds_per_step / 1e12

    @property
    def mfu(self) -> float | None:
        """Model-FLOP utilisation in [0, 1], or None without a known peak or FLOP count."""
        if self.achieved_tflops is None or self.peak_tflops is None:
            return None
        return self.achieved_tflops / self.peak_tflops

    def mfu_text(self) -> str:
        if self.mfu is not None:
            return f"{100 * self.mfu:.2f} % of {self.peak_tflops:g} TFLOP/s ({MFU_PRECISION} dense)"
        if self.peak_tflops is None:
            return f"n/a (no peak known for {self.backend.upper()} '{self.device_kind}')"
        return "n/a (no FLOP count from XLA)"

    def summary(self) -> str:
        flops = "n/a" if self.flops_per_step is None else f"{self.flops_per_step / 1e9:.3f} GFLOP"
        achieved = "" if self.achieved_tflops is None else f", {1e3 * self.achieved_tflops:.1f} GFLOP/s achieved"
        return (
            f"U-Net {self.image_shape}, {self.params:,} parameters, batch {self.batch} on {self.device_kind}: "
            f"{1e3 * self.seconds_per_step:.1f} ms/step, {self.images_per_second:,.0f} images/s; "
            f"{flops}/step{achieved}; MFU {self.mfu_text()} (compile {self.compile_seconds:.0f} s)"
        )


def _flops(compiled) -> float | None:
    """XLA's FLOP count of an `eqx.filter_jit(...).lower(...).compile()` (a dict, or a list of one)."""
    try:
        cost = compiled.compiled.cost_analysis()
    except Exception:  # some backends do not implement it
        return None
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    flops = None if cost is None else cost.get("flops")
    return float(flops) if flops is not None and flops > 0 else None


def measure(
    config_path: str = "configs/digits.yaml", *, steps: int = 20, warmup: int = 3, batch: int | None = None
) -> Throughput:
    """Time `steps` training steps (one per dispatch) after `warmup` ones.

    **Returns:** a `Throughput`.
    """
    overrides = [] if batch is None else [f"train.batch_size={batch}"]
    setup = build(load_config(config_path, overrides))
    batch = setup.config.train.batch_size
    data = jnp.asarray(setup.dataset.model_data("train"))
    rng = np.random.default_rng(0)
    indices = [jnp.asarray(rng.integers(0, len(data), (1, batch)), jnp.int32) for _ in range(warmup + steps)]

    state = setup.initial
    t0 = time.perf_counter()
    # Compiled once, ahead of time: the same computation the training loop's `run_steps` runs.
    step = run_steps.lower(setup.trainer, state, data, indices[0]).compile()
    compile_seconds = time.perf_counter() - t0
    times = []
    for i, idx in enumerate(indices):
        start = time.perf_counter()
        state, metrics = step(setup.trainer, state, data, idx)
        jax.block_until_ready(metrics["loss"])
        if i >= warmup:
            times.append(time.perf_counter() - start)
    device = jax.devices()[0]
    return Throughput(
        device_kind=device.device_kind,
        backend=jax.default_backend(),
        batch=batch,
        image_shape=tuple(int(d) for d in data.shape[1:]),
        params=count_params(state.model),
        seconds_per_step=float(np.median(times)),
        flops_per_step=_flops(step),
        peak_tflops=peak_tflops(device.device_kind),
        compile_seconds=compile_seconds,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/digits.yaml")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=None, help="override train.batch_size")
    args = parser.parse_args()
    print(measure(args.config, steps=args.steps, warmup=args.warmup, batch=args.batch).summary())


if __name__ == "__main__":
    main()
