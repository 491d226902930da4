r"""XLA:CPU tuning for small models evaluated on long batches: the one place it lives.

The library's code is written per example with `jnp` reductions. Where XLA:CPU compiles such
code badly for the mixture's sampler step (`analytic.GaussianMixture`, 8 components in 2-D
at batch 10,000: `benchmarks/eqx_vs_reference.py`), these drop-in replacements compile to
the same values in a form XLA:CPU runs fast:

- `sum` and `max` over a short axis: XLA:CPU hands a `reduce` to a library kernel that is
  slow when the reduced axis is short (components, coordinates) and the batch long; the
  pairwise slices here fuse with their neighbours into loops vectorised along the batch.
- `stored`: a value read many times (the softmax's logits) computed once, behind a
  `lax.cond` with two equal branches, where XLA:CPU would fuse it into every consumer and
  recompute it there.

Elsewhere, and on other backends, `sum`/`max` over a long axis are `jnp.sum`/`jnp.max` and
`stored` is a plain call.
"""

from collections.abc import Callable

import jax
import jax.core  # the Tracer check in `stored`
import jax.numpy as jnp
from jax import lax

from eqx_impl._typing import Array

# Reductions over an axis at most this long are pairwise elementwise ops.
SHORT_AXIS = 64


def sum(x: Array, axis: int) -> Array:  # noqa: A001  # a drop-in for jnp.sum
    """`jnp.sum(x, axis)`; pairwise (`pairwise`) over a short axis."""
    return pairwise(jnp.add, x, axis) if x.shape[axis] <= SHORT_AXIS else jnp.sum(x, axis)


def max(x: Array, axis: int) -> Array:  # noqa: A001  # a drop-in for jnp.max
    """`jnp.max(x, axis)`; pairwise (`pairwise`) over a short axis."""
    return pairwise(jnp.maximum, x, axis) if x.shape[axis] <= SHORT_AXIS else jnp.max(x, axis)


def pairwise(op: Callable[[Array, Array], Array], x: Array, axis: int) -> Array:
    r"""Reduce `axis` of `x` with the associative binary `op` in $\lceil\log_2 n\rceil$ rounds.

    Each round applies `op` to the first and the last $\lfloor n/2\rfloor$ entries (the middle
    one of an odd $n$ is carried over): the sum or maximum, up to the order of summation
    (pairwise: error $O(u\log n)$). Over a short axis and a long batch these slices and
    elementwise ops run about 10x faster on XLA:CPU than its library `reduce` kernel
    (YNNPACK); over long axes the kernel wins and compiles faster.

    **Returns:** `x` without `axis`.
    """
    axis = axis % x.ndim
    while (n := x.shape[axis]) > 1:
        half = n // 2
        pairs = op(lax.slice_in_dim(x, 0, half, axis=axis), lax.slice_in_dim(x, n - half, n, axis=axis))
        x = jnp.concatenate([pairs, lax.slice_in_dim(x, half, n - half, axis=axis)], axis) if n % 2 else pairs
    return jnp.squeeze(x, axis)


def stored(keep: Array, fn: Callable[..., Array], *args: Array) -> Array:
    r"""`fn(*args)`, computed once and kept in memory where XLA:CPU would recompute it.

    XLA:CPU fuses a cheap elementwise producer into every consumer: a softmax reads each of
    $K$ logits $K + 1$ times ($K$ in the maximum, once in the exponential), so fused logits
    are recomputed $K + 1$ times per entry. `lax.optimization_barrier` would say "store
    this", but XLA:CPU drops it; a `lax.cond` is a fusion boundary that it keeps. Both
    branches are `fn`, so the predicate, from any traced array `keep`, cannot change the
    result. With `keep` not traced, or off the CPU, `fn` is simply called.
    """
    if not isinstance(keep, jax.core.Tracer) or not keep.size or jax.default_backend() != "cpu":
        return fn(*args)
    keep = keep.reshape(-1)[0]
    return lax.cond(keep == keep, fn, fn, *args)
