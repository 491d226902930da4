r"""Compile time and run time of sampling: one compiled step looped in Python against the whole loop in one program.

`eqx_impl.evaluation.generate` runs a sampler in one of two ways (its `unroll` flag):

- **stepped** (`unroll=True`, the default for a U-Net): the model call is compiled once per
  batch shape (noise level traced) and the step loop runs in Python;
- **scan** (`unroll=False`, the default for MLPs): the sampler's own `lax.scan`, one program.

The **unrolled** baseline is how `generate` ran a U-Net before: the step loop unrolled
inside one jitted program with the noise levels as constants (`heun_sampler(...,
unroll=True)` under `eqx.filter_jit`, the same start and arithmetic), so its compile time
grows with the number of steps. All three run side by side in one process on:

1. the `configs/digits.yaml` U-Net at its (untrained) initialisation (its zero-initialised
   output layer and biases set to small random values), EDM Heun, the
   `sample` command's setting (`--num 100 --steps 32` by default here; `--unet-scan` adds
   the scan variant, which XLA:CPU runs tens of times slower);
2. the 2-D, 8-component Gaussian mixture of `eqx_vs_reference.py` with its Bayes-optimal
   ε-model, 18-step Heun at batch 10,000.

Per variant: **compile** = first call − the median of the later calls (which run the same
shapes with other keys, alternating between the variants), **run** = that median; and **new steps** = the first call at a
different number of steps (`--other-steps`), which a stepped sampler serves from its
compiled model call and the others compile again. Samples of the three variants agree to float32
rounding (printed).

    python -m benchmarks.sampler_compile [--num 100 --steps 32 --other-steps 24 --repeats 3 --unet-scan]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

VARIANTS = ("unrolled", "scan", "stepped")


@dataclasses.dataclass
class Timing:
    model: str
    variant: str
    compile_s: float
    run_s: float
    new_steps_s: float
    max_diff: float  # largest |sample − stepped sample|

    def row(self) -> str:
        return (
            f"{self.model:<28} {self.variant:<9} compile {self.compile_s:7.2f} s  run {self.run_s:7.3f} s  "
            f"new steps {self.new_steps_s:7.2f} s  max diff {self.max_diff:.1e}"
        )


@eqx.filter_jit
def _unrolled(eps_model, keys, levels, shape, sigma_data):
    """The baseline: the Heun loop unrolled in one program, levels as constants (static tuple)."""
    from eqx_impl.edm import denoiser_from_eps
    from eqx_impl.samplers import heun_sampler

    sigmas = jnp.asarray(levels, jnp.result_type(float))

    def one(key):
        key_init, _ = jax.random.split(key)
        x = jnp.sqrt(sigmas[0] ** 2 + sigma_data**2) * jax.random.normal(key_init, shape, sigmas.dtype)
        return heun_sampler(denoiser_from_eps(eps_model), x, sigmas, unroll=True)

    return jax.vmap(one)(keys)


def _caller(eps_model, shape, *, num, variant, sigma_min, sigma_data):
    """`call(seed, steps) -> samples` for one variant (Heun)."""
    from eqx_impl.evaluation import generate, sampler_steps

    def call(seed, n):
        key = jax.random.key(seed)
        if variant == "unrolled":
            levels = tuple(float(v) for v in np.asarray(sampler_steps("heun", n, sigma_min=sigma_min)))
            out = _unrolled(eps_model, jax.random.split(key, num), levels, shape, sigma_data)
        else:
            out = generate(
                eps_model, num, shape, key=key, steps=n, sigma_min=sigma_min, sigma_data=sigma_data,
                batch_size=num, unroll=variant == "stepped",
            )  # fmt: skip
        return np.asarray(jax.block_until_ready(out))

    return call


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def measure(
    eps_model, shape, model_name, *, num, steps, other_steps, sigma_min, sigma_data, repeats, variants=VARIANTS
):
    """Time each of `variants`: first calls, then `repeats` rounds of runs alternating between
    the variants (so a change in the machine's load hits all of them alike), then a first call
    at `other_steps`. **Returns:** a list of `Timing`."""
    calls = {
        v: _caller(eps_model, shape, num=num, variant=v, sigma_min=sigma_min, sigma_data=sigma_data) for v in variants
    }
    first, samples, runs = {}, {}, {v: [] for v in variants}
    for v in variants:
        first[v], samples[v] = _timed(calls[v], 0, steps)
    for r in range(repeats):
        for v in variants:
            runs[v].append(_timed(calls[v], r + 1, steps)[0])
    results = []
    for v in variants:
        run = float(np.median(runs[v]))
        new_steps = _timed(calls[v], 0, other_steps)[0]
        diff = float(np.max(np.abs(samples[v] - samples[variants[-1]])))
        results.append(Timing(model_name, v, first[v] - run, run, new_steps, diff))
        print(results[-1].row(), flush=True)
    return results


def digits_unet(config: str = "configs/digits.yaml"):
    """The U-Net of `config` at its initialisation (EMA copy, inference mode), as `sample` uses it.

    **Returns:** `(eps_model, shape, sigma_min, sigma_data)`.
    """
    import math

    from eqx_impl.train.config_io import load_config
    from eqx_impl.train.loop import build

    setup = build(load_config(config))
    cfg = setup.config
    sigma_min = math.exp(-0.5 * cfg.objective.logsnr_max)
    model = without_zero_leaves(eqx.nn.inference_mode(setup.initial.ema))
    return model, tuple(setup.dataset.shape), sigma_min, float(cfg.model.sigma_data or 0.0)


def without_zero_leaves(model):
    """`model` with every all-zero array (the zero-initialised output layer, the biases) set
    to small random values: at initialisation ε̂ ≡ 0, and the samples should depend on the
    whole network. **Returns:** the model."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    leaves = [
        0.02 * jax.random.normal(k, a.shape, a.dtype) if not np.any(a) else a for k, a in zip(keys, leaves, strict=True)
    ]
    return eqx.combine(jax.tree.unflatten(treedef, leaves), static)


def gmm_model():
    """The 2-D mixture's Bayes-optimal ε-model in float32. **Returns:** `(eps_model, shape)`."""
    import eqx_impl as E
    from benchmarks.eqx_vs_reference import gmm_parameters

    gmm = E.GaussianMixture(*(jnp.asarray(a, jnp.float32) for a in gmm_parameters()))
    return gmm.eps, (2,)


def run_all(
    *,
    num=100,
    steps=32,
    other_steps=24,
    gmm_batch=10_000,
    gmm_steps=18,
    repeats=3,
    unet_variants=("unrolled", "stepped"),
) -> list[Timing]:
    """Both models: the U-Net with `unet_variants` (its `scan` takes minutes per call on a CPU),
    the mixture with all three. **Returns:** the list of `Timing`."""
    model, shape, sigma_min, sigma_data = digits_unet()
    name = f"U-Net digits, {num}×{steps} steps"
    out = measure(
        model, shape, name, num=num, steps=steps, other_steps=other_steps,
        sigma_min=sigma_min, sigma_data=sigma_data, repeats=repeats, variants=unet_variants,
    )  # fmt: skip
    eps, shape = gmm_model()
    name = f"GMM, {gmm_batch}×{gmm_steps} steps"
    out += measure(
        eps, shape, name, num=gmm_batch, steps=gmm_steps, other_steps=gmm_steps - 4,
        sigma_min=0.002, sigma_data=0.0, repeats=repeats,
    )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=100)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--other-steps", type=int, default=24)
    parser.add_argument("--gmm-batch", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--unet-scan", action="store_true", help="also time the U-Net in one lax.scan (slow on CPU)")
    args = parser.parse_args()
    print(f"JAX {jax.__version__}, backend {jax.default_backend()}")
    run_all(
        num=args.num, steps=args.steps, other_steps=args.other_steps, gmm_batch=args.gmm_batch, repeats=args.repeats,
        unet_variants=VARIANTS if args.unet_scan else ("unrolled", "stepped"),
    )  # fmt: skip


if __name__ == "__main__":
    main()
