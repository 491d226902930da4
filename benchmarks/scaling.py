"""Steps per second of data-parallel training against the number of devices, with the same
global batch.

Each device count runs in its own process (`XLA_FLAGS=--xla_force_host_platform_device_count=n`
on CPU; on a GPU host `--platform gpu` uses the first `n` GPUs) and trains the `configs/gmm.yaml`
model (an MLP, width 128, depth 3, adaptive proposal) with `train.data_parallel=true`, so one
device runs the same sharded code path. After one compiling dispatch it times `--repeats`
dispatches of `--steps-per-dispatch` steps and takes the median rate. The sweep over device
counts is repeated `--rounds` times (so load drift on a shared machine hits every count), and
the report gives, per count, the median over rounds with its range and the ratio to one
device. Forced CPU devices share the host's cores: on CPU more devices cannot add compute.

    python benchmarks/scaling.py [--devices 1 2 4 --batch 1024 --steps-per-dispatch 10 --repeats 7 --rounds 3]
    python benchmarks/scaling.py --platform gpu --devices 1   # one-GPU throughput
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def measure(devices: int, batch: int, steps_per_dispatch: int, repeats: int) -> dict:
    """In this process (started with `devices` devices): median steps/s of the sharded step."""
    import jax

    from eqx_impl.train import build, load_config, parallel, run_steps

    overrides = [
        f"train.batch_size={batch}",
        f"train.steps_per_dispatch={steps_per_dispatch}",
        "train.data_parallel=true",
        "train.preflight=false",
    ]
    setup = build(load_config(ROOT / "configs" / "gmm.yaml", overrides))
    mesh = setup.trainer.mesh
    assert mesh.devices.size == devices == len(jax.devices()), (mesh.devices.size, devices)
    data = setup.dataset.model_data("train")
    train_data = parallel.replicate(data, mesh)
    state = parallel.replicate(setup.initial, mesh)
    rng = np.random.default_rng(0)

    def dispatch(state):
        indices = parallel.shard_indices(rng.integers(0, len(data), (steps_per_dispatch, batch)), mesh)
        state, metrics = run_steps(setup.trainer, state, train_data, indices)
        jax.block_until_ready(metrics)
        return state

    t0 = time.perf_counter()
    state = dispatch(state)  # compiles
    compile_s = time.perf_counter() - t0
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state = dispatch(state)
        rates.append(steps_per_dispatch / (time.perf_counter() - t0))
    return {
        "devices": devices,
        "platform": jax.devices()[0].platform,
        "device_kind": jax.devices()[0].device_kind,
        "steps_per_sec": float(np.median(rates)),
        "examples_per_sec": float(np.median(rates)) * batch,
        "first_dispatch_s": compile_s,
    }


def run_child(devices: int, platform: str, args) -> dict:
    env = dict(os.environ, JAX_PLATFORMS=platform)
    if platform == "cpu":
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    else:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(devices))
    command = [sys.executable, __file__, "--child", str(devices), "--batch", str(args.batch)]
    command += ["--steps-per-dispatch", str(args.steps_per_dispatch), "--repeats", str(args.repeats)]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"{devices} device(s) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--platform", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--batch", type=int, default=1024, help="global batch size (all device counts)")
    p.add_argument("--steps-per-dispatch", type=int, default=10)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--rounds", type=int, default=3, help="sweeps over the device counts")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child, args.batch, args.steps_per_dispatch, args.repeats)))
        return
    rounds = [[run_child(n, args.platform, args) for n in args.devices] for _ in range(args.rounds)]
    print(
        f"global batch {args.batch}, {args.steps_per_dispatch} steps per dispatch, median of "
        f"{args.repeats} dispatches; median [range] over {args.rounds} rounds"
    )
    print(f"{'devices':>7}  {'steps/s':>22}  {'ratio to 1 device':>22}  device")
    for j, n in enumerate(args.devices):
        rates = np.array([r[j]["steps_per_sec"] for r in rounds])
        ratios = rates / np.array([r[0]["steps_per_sec"] for r in rounds])
        first = rounds[0][j]
        print(
            f"{n:>7}  {np.median(rates):8.1f} [{rates.min():5.1f}, {rates.max():5.1f}]  "
            f"{np.median(ratios):8.2f} [{ratios.min():5.2f}, {ratios.max():5.2f}]  "
            f"{first['platform']} ({first['device_kind']})"
        )


if __name__ == "__main__":
    main()
