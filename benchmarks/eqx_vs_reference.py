"""Throughput of eqx_impl against the float64 reference, side by side in one process.

1. The weighted loss of an MLP ε-model at batch 4096 (reference: its per-example API in a
   Python loop, as the reference is written; eqx: `jax.vmap` under one `jit`).
2. 18-step EDM Heun sampling (35 denoiser calls) of a 2-D, 8-component Gaussian mixture
   with its Bayes-optimal denoiser at batch 10,000. Both packages run the same sampler on
   the whole batch (deterministic Heun and the mixture's methods broadcast over leading
   axes): the reference in float64 NumPy, eqx in float32 under one `jit`. The time of
   `jax.vmap` over the per-example sampler is printed too (the mixture's methods are written
   per example and broadcast over the batch, so both routes compile to the same loops).

Prints median wall times over repeats and the throughput ratio eqx/reference. The target
(issue: eqx >= 50x the reference on the CPU for sampling) is reported, not asserted.

    python benchmarks/eqx_vs_reference.py [--repeats 5] [--tuning]

`--tuning` also times the Heun sampler with each rewrite of `eqx_impl/_xla_cpu.py` switched off.
"""

from __future__ import annotations

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import eqx_impl as E
import reference as R


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def mlp_weights(dim: int, hidden: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    sizes = [dim + 1, hidden, hidden, dim]
    return [(rng.normal(size=(m, n)) / np.sqrt(m), np.zeros(n)) for m, n in zip(sizes[:-1], sizes[1:], strict=True)]


def numpy_mlp(weights):
    def eps_model(z, logsnr):
        h = np.concatenate([z, [np.tanh(logsnr / 10.0)]])
        for k, (w, b) in enumerate(weights):
            h = h @ w + b
            h = np.tanh(h) if k < len(weights) - 1 else h
        return h

    return eps_model


def jax_mlp(weights):
    params = [(jnp.asarray(w, jnp.float32), jnp.asarray(b, jnp.float32)) for w, b in weights]

    def eps_model(z, logsnr):
        h = jnp.concatenate([z, jnp.tanh(logsnr / 10.0)[None]])
        for k, (w, b) in enumerate(params):
            h = h @ w + b
            h = jnp.tanh(h) if k < len(params) - 1 else h
        return h

    return eps_model


def bench_loss(repeats: int, batch: int = 4096, dim: int = 16) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    x, eps = rng.normal(size=(batch, dim)), rng.normal(size=(batch, dim))
    u = (rng.uniform() + np.arange(batch) / batch) % 1.0
    ref_schedule, ref_w = R.Cosine(-15.0, 15.0), R.Sigmoid(2.0)
    lam = ref_schedule.logsnr(u)
    dens = ref_schedule.density(lam)
    ref_model = numpy_mlp(mlp_weights(dim))

    def reference_loss():
        return np.mean([R.weighted_loss(ref_model, x[i], lam[i], eps[i], ref_w, dens[i]) for i in range(batch)])

    schedule, weighting, model = E.Cosine(-15.0, 15.0), E.Sigmoid(2.0), jax_mlp(mlp_weights(dim))

    @eqx.filter_jit
    def eqx_loss(x, eps, u):
        lam = schedule.logsnr(u)
        per_example = jax.vmap(E.weighted_loss, in_axes=(None, 0, 0, 0, None, 0))
        return jnp.mean(per_example(model, x, lam, eps, weighting, schedule.density(lam)))

    args = [jnp.asarray(a, jnp.float32) for a in (x, eps, u)]
    eqx_value = float(eqx_loss(*args))  # compile
    ref_value = float(reference_loss())
    print(
        f"  loss value: reference {ref_value:.6f}, eqx {eqx_value:.6f} (rel. diff {abs(eqx_value / ref_value - 1):.1e})"
    )
    t_ref = median_time(reference_loss, max(1, repeats // 2))
    t_eqx = median_time(lambda: eqx_loss(*args).block_until_ready(), repeats * 4)
    return t_ref, t_eqx


def gmm_parameters(k: int = 8):
    angles = 2 * np.pi * np.arange(k) / k
    return np.full(k, 1.0 / k), 2.0 * np.stack([np.cos(angles), np.sin(angles)], 1), np.full(k, 0.3)


def bench_heun(repeats: int, batch: int = 10_000, steps: int = 18) -> tuple[float, float]:
    weights, means, stds = gmm_parameters()
    sigmas = R.edm_sigmas(steps)
    x0 = np.random.default_rng(1).normal(size=(batch, 2)) * sigmas[0]

    ref_denoiser = R.denoiser_from_eps(R.GaussianMixture(weights, means, stds).eps)

    def reference_sample():
        return R.heun_sampler(ref_denoiser, x0, sigmas)

    gmm = E.GaussianMixture(*(jnp.asarray(a, jnp.float32) for a in (weights, means, stds)))
    denoiser = E.denoiser_from_eps(gmm.eps)
    sigmas32 = jnp.asarray(sigmas, jnp.float32)

    @eqx.filter_jit
    def eqx_sample(x):
        return E.heun_sampler(denoiser, x, sigmas32)

    @eqx.filter_jit
    def eqx_sample_vmap(x):
        return jax.vmap(lambda xi: E.heun_sampler(denoiser, xi, sigmas32))(x)

    x32 = jnp.asarray(x0, jnp.float32)
    out, out_vmap = np.asarray(eqx_sample(x32)), np.asarray(eqx_sample_vmap(x32))
    ref = reference_sample()
    for name, value in [("batch", out), ("vmap", out_vmap)]:
        err = np.max(np.abs(value - ref))
        print(f"  sample agreement ({name}): max |eqx - reference| = {err:.1e} (float32 vs float64)")
    t_ref = median_time(reference_sample, repeats)
    t_eqx = median_time(lambda: eqx_sample(x32).block_until_ready(), repeats * 4)
    t_vmap = median_time(lambda: eqx_sample_vmap(x32).block_until_ready(), repeats)
    calls = 2 * (len(sigmas) - 1) - 1
    print(f"  eqx: {t_eqx / calls * 1e3:.3f} ms per denoiser call ({calls} calls); vmap of the sampler {t_vmap:.4f} s")
    return t_ref, t_eqx


def bench_tuning(repeats: int, batch: int = 10_000, steps: int = 18) -> None:
    """The Heun sampler of `bench_heun` with each rewrite of `eqx_impl._xla_cpu` switched off
    (short-axis sums and maxima as `jnp.sum`/`jnp.max`; logits not stored), timed alternately."""
    from eqx_impl import _xla_cpu

    weights, means, stds = gmm_parameters()
    gmm = E.GaussianMixture(*(jnp.asarray(a, jnp.float32) for a in (weights, means, stds)))
    sigmas32 = jnp.asarray(R.edm_sigmas(steps), jnp.float32)
    x32 = jnp.asarray(np.random.default_rng(1).normal(size=(batch, 2)) * 80.0, jnp.float32)
    short_axis, stored = _xla_cpu.SHORT_AXIS, _xla_cpu.stored
    plain = lambda keep, fn, *args: fn(*args)  # noqa: E731
    variants = {"both (the library)": (short_axis, stored), "pairwise only": (short_axis, plain)}
    variants |= {"stored logits only": (0, stored), "neither (plain jnp)": (0, plain)}
    compiled = {}
    for name, (short, store) in variants.items():
        _xla_cpu.SHORT_AXIS, _xla_cpu.stored = short, store
        sample = jax.jit(lambda x: E.heun_sampler(E.denoiser_from_eps(gmm.eps), x, sigmas32))
        compiled[name] = sample.lower(x32).compile()
    _xla_cpu.SHORT_AXIS, _xla_cpu.stored = short_axis, stored
    times = {name: [] for name in compiled}
    for _ in range(repeats):
        for name, fn in compiled.items():
            start = time.perf_counter()
            fn(x32).block_until_ready()
            times[name].append(time.perf_counter() - start)
    base = float(np.median(times["both (the library)"]))
    for name, t in times.items():
        print(f"  {name:<22} {np.median(t):.5f} s  ({np.median(t) / base:.1f}x the library's time)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tuning", action="store_true", help="also time Heun without eqx_impl._xla_cpu's rewrites")
    args = parser.parse_args()
    print(f"backend: {jax.default_backend()} ({jax.devices()[0].device_kind}), repeats {args.repeats}")
    rows = []
    print("weighted loss, MLP ε-model, batch 4096:")
    rows.append(("weighted loss (batch 4096)", *bench_loss(args.repeats)))
    print("18-step Heun, 2-D GMM, batch 10,000:")
    rows.append(("Heun 18 steps (batch 10,000)", *bench_heun(args.repeats)))
    print(f"\n{'benchmark':<32} {'reference s':>12} {'eqx s':>10} {'eqx/ref throughput':>20}")
    for name, t_ref, t_eqx in rows:
        print(f"{name:<32} {t_ref:>12.4f} {t_eqx:>10.5f} {t_ref / t_eqx:>19.1f}x")
    if args.tuning:
        print("\n18-step Heun (batch 10,000) without the XLA:CPU rewrites of eqx_impl/_xla_cpu.py:")
        bench_tuning(args.repeats)


if __name__ == "__main__":
    main()
