"""Overhead of the library's training step against a minimal hand-written jitted step.

Both steps train the same MLP ε-model on the same 2-D mixture batch with the same objective
(Sigmoid(2) weighting, Cosine proposal, stratified times), the same optimiser (global-norm
clipping + AdamW) and an EMA of the weights; each is one `jit` per step. They run in
alternating blocks, so machine drift affects both alike; the figure is the ratio of median
step times (target: overhead <= 5%).

    python benchmarks/train_overhead.py [--blocks 7 --steps 200 --batch 256]
"""

from __future__ import annotations

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import eqx_impl as ex
from eqx_impl.proposals import FixedProposal
from eqx_impl.train.config import OptimConfig
from eqx_impl.train.step import Trainer


def hand_written(model, lr, clip, ema_decay):
    """The minimal step: loss, grad, clipped AdamW, EMA — nothing else."""
    schedule, weighting = ex.Cosine(-15.0, 15.0), ex.Sigmoid(2.0)
    opt = optax.chain(optax.clip_by_global_norm(clip), optax.adamw(lr, b2=0.99, weight_decay=0.0))

    def loss_fn(model, x, key):
        k_u, k_eps = jax.random.split(key)
        u = (jax.random.uniform(k_u) + jnp.arange(x.shape[0]) / x.shape[0]) % 1.0
        lam = schedule.logsnr(u)
        eps = jax.random.normal(k_eps, x.shape)
        per = jax.vmap(ex.weighted_loss, (None, 0, 0, 0, None, 0))(model, x, lam, eps, weighting, schedule.density(lam))
        return per.mean()

    @eqx.filter_jit
    def step(model, ema, opt_state, x, key, i):
        loss, grads = eqx.filter_value_and_grad(loss_fn)(model, x, jax.random.fold_in(key, i))
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_inexact_array))
        model = eqx.apply_updates(model, updates)
        ema = jax.tree.map(lambda e, p: ema_decay * e + (1 - ema_decay) * p, ema, model)
        return model, ema, opt_state, loss

    return step, opt.init(eqx.filter(model, eqx.is_inexact_array))


def measure(blocks: int = 7, steps: int = 200, batch: int = 256) -> tuple[float, float]:
    """Median seconds per step of (library step, hand-written step)."""
    data = np.asarray(ex.data.load("gmm").model_data(), np.float32)
    batches = [jnp.asarray(data[i * batch : (i + 1) * batch]) for i in range(steps)]
    step_numbers = [jnp.asarray(i, jnp.int32) for i in range(steps)]  # on the device, like the data
    net = ex.MLP(2, key=jax.random.key(0), width=128, depth=3)
    model = ex.EpsModel(net, target="eps")

    config = OptimConfig(lr=1e-3, warmup_steps=0, lr_decay="constant", grad_clip=1.0, ema_decay=0.999)
    trainer = Trainer.create(ex.Sigmoid(2.0), FixedProposal(ex.Cosine(-15.0, 15.0)), config, steps)
    lib_step = eqx.filter_jit(lambda trainer, state, x: trainer.step(state, x))
    state = trainer.init(model, key=jax.random.key(1))

    hw_step, opt_state = hand_written(model, 1e-3, 1.0, 0.999)
    hw = (model, model, opt_state)

    def run_library():
        nonlocal state
        for x in batches:
            state, metrics = lib_step(trainer, state, x)
        jax.block_until_ready(metrics["loss"])

    def run_hand():
        nonlocal hw
        key = jax.random.key(2)
        for i, x in zip(step_numbers, batches, strict=True):
            *hw, loss = hw_step(*hw, x, key, i)
        jax.block_until_ready(loss)

    run_library(), run_hand()  # compile and warm up
    lib_times, hand_times = [], []
    for _ in range(blocks):
        for fn, times in ((run_library, lib_times), (run_hand, hand_times)):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) / steps)
    return float(np.median(lib_times)), float(np.median(hand_times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    lib, hand = measure(args.blocks, args.steps, args.batch)
    print(
        f"backend {jax.default_backend()}; MLP width 128 depth 3, batch {args.batch}, {args.blocks} blocks of {args.steps} steps"
    )
    print(f"library step   {lib * 1e3:8.3f} ms  ({1 / lib:7.0f} steps/s)")
    print(f"hand-written   {hand * 1e3:8.3f} ms  ({1 / hand:7.0f} steps/s)")
    print(f"overhead       {100 * (lib / hand - 1):+7.1f} %  (ratio {lib / hand:.3f})")


if __name__ == "__main__":
    main()
