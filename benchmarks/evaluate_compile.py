r"""Compile time and run time of `weighted-elbo evaluate` (bpd and FD of the digits U-Net), its samples drawn by `generate` against the sampler loop unrolled in one program.

`evaluate --metrics bpd,fd` on a `configs/digits.yaml` run draws `eval.num_samples` samples
(EDM Heun, `eval.sampling_steps` steps), computes the FD of their classifier features against
the test set and the VDM bound in bits/dim on the test set. Two ways to draw the samples:

- **stepped**: what `evaluate` runs (`generate` with the U-Net default `unroll=True`: one
  compiled model call, the step loop in Python);
- **unrolled**: the Heun loop unrolled inside one jitted program, the noise levels as
  constants (`sampler_compile._unrolled`), how `generate` ran a U-Net before; the bound and
  the FD are then computed from those samples by the same `evaluate_model`.

The model is the U-Net at its initialisation with its all-zero leaves set to small random
values (`sampler_compile.without_zero_leaves`); the FD classifier is loaded from its cache
(trained once beforehand); every process reads one copy of `configs/digits.yaml` taken at the
start. Each variant runs in a fresh process without JAX's persistent
compilation cache, as a user's `evaluate` would: **compile** = its first evaluation minus the
median of `--repeats` later ones (other seeds), **run** = that median; the processes alternate
between the variants for `--rounds` rounds. Both variants give the same bpd and FD up to
float32 rounding (printed).

    python -m benchmarks.evaluate_compile [--num 400 --steps 24 --repeats 2 --rounds 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VARIANTS = ("unrolled", "stepped")
ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class EvalTiming:
    variant: str
    compile_s: float
    run_s: float
    bpd: float
    fd: float

    def row(self) -> str:
        return (
            f"evaluate {self.variant:<9} compile {self.compile_s:7.2f} s  run {self.run_s:7.3f} s  "
            f"bpd {self.bpd:.4f}  fd {self.fd:.4f}"
        )


def _setup(config_path: str, num: int, steps: int):
    """The run of `config_path` at initialisation, evaluated on `num` samples in `steps` Heun steps.

    **Returns:** `(config, dataset, model, weighting)`.
    """
    import equinox as eqx

    from benchmarks.sampler_compile import without_zero_leaves
    from eqx_impl.train.config_io import load_config
    from eqx_impl.train.loop import build

    overrides = [
        f"eval.num_samples={num}",
        f"eval.batch_size={num}",
        f"eval.sampling_steps={steps}",
        "eval.sampler=heun",
    ]
    setup = build(load_config(config_path, overrides))
    model = without_zero_leaves(eqx.nn.inference_mode(setup.initial.ema))
    return setup.config, setup.dataset, model, setup.weighting


def worker(variant: str, config_path: str, *, num: int, steps: int, repeats: int) -> EvalTiming:
    """One variant in this process: a first evaluation, then `repeats` more with other seeds.

    **Returns:** its `EvalTiming`.
    """
    import math

    from benchmarks.sampler_compile import _caller
    from eqx_impl.train.evaluate import evaluate_model

    config, dataset, model, weighting = _setup(config_path, num, steps)
    assert config.objective.logsnr_max is not None  # filled in by `build`
    sigma_min = math.exp(-0.5 * config.objective.logsnr_max)
    sigma_data = float(config.model.sigma_data or 0.0)
    unrolled = _caller(
        model, tuple(dataset.shape), num=num, variant="unrolled", sigma_min=sigma_min, sigma_data=sigma_data
    )

    def evaluate(seed: int) -> dict:
        cfg = dataclasses.replace(config, eval=dataclasses.replace(config.eval, seed=seed))
        samples = unrolled(seed, steps) if variant == "unrolled" else None
        return evaluate_model(cfg, dataset, model, weighting, samples=samples, metrics=["bpd", "fd"])

    t0 = time.perf_counter()
    values = evaluate(0)
    first = time.perf_counter() - t0
    runs = []
    for r in range(repeats):
        t0 = time.perf_counter()
        evaluate(r + 1)
        runs.append(time.perf_counter() - t0)
    run = float(np.median(runs))
    return EvalTiming(variant, first - run, run, float(values["bpd"]), float(values["fd"]))


def _in_fresh_process(variant: str, config_path: str, *, num: int, steps: int, repeats: int) -> EvalTiming:
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    command = [sys.executable, "-m", "benchmarks.evaluate_compile", "--worker", variant, "--config", config_path]
    command += ["--num", str(num), "--steps", str(steps), "--repeats", str(repeats)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return EvalTiming(**json.loads(done.stdout.splitlines()[-1]))


def run_all(*, num: int = 400, steps: int = 24, repeats: int = 2, rounds: int = 1) -> list[EvalTiming]:
    """Both variants, each in fresh processes, alternating for `rounds` rounds.

    **Returns:** one `EvalTiming` per variant: the medians over the rounds.
    """
    from eqx_impl.evaluation import ClassifierConfig, load_classifier

    load_classifier(ClassifierConfig(dataset="digits", data_seed=0))  # cached before timing
    found: dict[str, list[EvalTiming]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:  # every process reads the same config
        config_path = str(Path(tmp) / "digits.yaml")
        shutil.copyfile(ROOT / "configs" / "digits.yaml", config_path)
        for _ in range(rounds):
            for v in VARIANTS:
                found[v].append(_in_fresh_process(v, config_path, num=num, steps=steps, repeats=repeats))
    results = []
    for v, timings in found.items():
        median = EvalTiming(
            v,
            float(np.median([t.compile_s for t in timings])),
            float(np.median([t.run_s for t in timings])),
            timings[0].bpd,
            timings[0].fd,
        )
        print(median.row(), flush=True)
        results.append(median)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--num", type=int, default=400, help="samples (eval.num_samples of configs/digits.yaml)")
    parser.add_argument("--steps", type=int, default=24, help="Heun steps (eval.sampling_steps of configs/digits.yaml)")
    parser.add_argument("--repeats", type=int, default=2, help="timed evaluations after the first, per process")
    parser.add_argument("--rounds", type=int, default=1, help="fresh processes per variant, alternating")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--config", default=str(ROOT / "configs" / "digits.yaml"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        timing = worker(args.worker, args.config, num=args.num, steps=args.steps, repeats=args.repeats)
        print(json.dumps(dataclasses.asdict(timing)))
        return
    import jax

    print(f"JAX {jax.__version__}, backend {jax.default_backend()}")
    run_all(num=args.num, steps=args.steps, repeats=args.repeats, rounds=args.rounds)


if __name__ == "__main__":
    main()
