r"""Two-sample distances for low-dimensional data: sliced Wasserstein and MMD, plus a
permutation test that turns either into a p-value.

Samples have shape `(N, *dims)` and are flattened to `(N, D)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

from eqx_impl._typing import PRNGKeyArray

__all__ = [
    "PermutationTest",
    "median_bandwidth",
    "mmd2",
    "permutation_test",
    "sliced_wasserstein",
]


def _flat(name: str, x) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[0] < 2:
        raise ValueError(f"{name} must have shape (N, *dims) with N >= 2, got {x.shape}.")
    x = x.reshape(x.shape[0], -1)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def _pair(x, y) -> tuple[jax.Array, jax.Array]:
    x, y = _flat("x", x), _flat("y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimensions, got {x.shape} and {y.shape}.")
    dtype = jnp.promote_types(x.dtype, y.dtype)
    return x.astype(dtype), y.astype(dtype)


# --- sliced Wasserstein --------------------------------------------------------------------


@eqx.filter_jit
def _sliced_wasserstein_p(x, y, key, num_projections, p):
    directions = jax.random.normal(key, (num_projections, x.shape[1]), x.dtype)
    directions = directions / jnp.linalg.norm(directions, axis=1, keepdims=True)
    px = jnp.sort(x @ directions.T, axis=0)
    py = jnp.sort(y @ directions.T, axis=0)
    return jnp.mean(jnp.abs(px - py) ** p)  # mean over projections of W_p^p


def sliced_wasserstein(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    key: PRNGKeyArray,
    num_projections: int = 256,
    p: int = 2,
) -> float:
    r"""Sliced Wasserstein distance $\mathrm{SW}_p = \big(\mathbb E_\theta\, W_p^p(\theta^\top\!x, \theta^\top\!y)\big)^{1/p}$.

    Directions $\theta$ are uniform on the unit sphere (normalised Gaussians drawn from
    `key`; one-dimensional data therefore gets $\theta = \pm1$, i.e. the exact $W_p$). For
    two samples of equal size $n$ the 1-D distance is exact by sorting:
    $W_p^p = \frac1n\sum_i |x_{(i)} - y_{(i)}|^p$. Subsample the larger sample to compare
    samples of different sizes. The empirical distance is biased upwards by sampling noise
    ($O(n^{-1/2})$); use `permutation_test` to judge whether it is significant.

    **Returns:** $\mathrm{SW}_p$ as a Python float.
    """
    x, y = _pair(x, y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"sliced_wasserstein needs samples of equal size (exact sorting), got {x.shape[0]} "
            f"and {y.shape[0]}; subsample the larger one, e.g. y[:{x.shape[0]}]."
        )
    if isinstance(num_projections, bool) or not isinstance(num_projections, int) or num_projections < 1:
        raise ValueError(f"num_projections must be a positive integer, got {num_projections!r}.")
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}.")
    return float(_sliced_wasserstein_p(x, y, key, num_projections, p)) ** (1.0 / p)


# --- maximum mean discrepancy --------------------------------------------------------------


def median_bandwidth(x: npt.ArrayLike, y: npt.ArrayLike, max_points: int = 1000) -> float:
    r"""Median heuristic: the median pairwise distance $\|a - b\|$ over the pooled sample
    (its first `max_points // 2` points of each, distinct pairs only).

    **Returns:** a Python float.
    """
    x, y = _pair(x, y)
    half = max(max_points // 2, 1)
    pooled = np.concatenate([np.asarray(x[:half]), np.asarray(y[:half])]).astype(np.float64)
    sq = np.sum((pooled[:, None, :] - pooled[None, :, :]) ** 2, axis=-1)
    upper = sq[np.triu_indices(len(pooled), k=1)]
    return float(np.sqrt(np.median(upper)))


@eqx.filter_jit
def _kernel_sum(a, b, inv_two_h2, block, exclude_diagonal):
    r"""$\sum_{i,j} \sum_h \exp(-\|a_i - b_j\|^2/(2h^2))$, rows of `a` in blocks (bounded memory)."""
    n = a.shape[0]
    num_blocks = -(-n // block)
    pad = num_blocks * block - n
    rows = jnp.concatenate([a, jnp.zeros((pad, a.shape[1]), a.dtype)]).reshape(num_blocks, block, -1)
    valid = (jnp.arange(num_blocks * block) < n).reshape(num_blocks, block)
    index = jnp.arange(num_blocks * block).reshape(num_blocks, block)
    b_sq = jnp.sum(b**2, axis=1)

    def block_sum(inputs):
        rows, valid, index = inputs
        sq = jnp.sum(rows**2, axis=1)[:, None] + b_sq[None, :] - 2.0 * rows @ b.T
        sq = jnp.maximum(sq, 0.0)  # rounding only: squared distances are >= 0
        k = jnp.sum(jnp.exp(-sq[..., None] * inv_two_h2), axis=-1)
        keep = valid[:, None]
        if exclude_diagonal:
            keep = keep & (index[:, None] != jnp.arange(b.shape[0])[None, :])
        return jnp.sum(jnp.where(keep, k, 0.0))

    return jnp.sum(jax.lax.map(block_sum, (rows, valid, index)))


def mmd2(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    bandwidths: Sequence[float] | npt.ArrayLike | None = None,
    block_size: int = 512,
) -> float:
    r"""Unbiased estimate (U-statistic) of the squared maximum mean discrepancy.

    $$\widehat{\mathrm{MMD}}^2 = \frac{1}{n(n-1)}\sum_{i\ne j}k(x_i,x_j) + \frac{1}{m(m-1)}\sum_{i\ne j}k(y_i,y_j)
      - \frac{2}{nm}\sum_{i,j}k(x_i,y_j),\qquad k(a,b) = \sum_h e^{-\|a-b\|^2/(2h^2)}.$$

    The sum of Gaussian kernels over several `bandwidths` $h$ is characteristic and less
    sensitive to any one scale; default: `median_bandwidth(x, y)` × (0.5, 1, 2). Its
    expectation is 0 when $x$ and $y$ come from the same distribution, so the estimate can be
    slightly negative. Data are centred by their pooled mean first (less cancellation in
    $\|a\|^2 + \|b\|^2 - 2a\cdot b$); rows are processed `block_size` at a time.

    **Returns:** $\widehat{\mathrm{MMD}}^2$ as a Python float.
    """
    x, y = _pair(x, y)
    if bandwidths is None:
        h = median_bandwidth(x, y)
        bandwidths = (0.5 * h, h, 2.0 * h)
    bandwidths = np.asarray(bandwidths, dtype=np.float64).reshape(-1)
    if bandwidths.size == 0 or not np.all(np.isfinite(bandwidths) & (bandwidths > 0)):
        raise ValueError(f"bandwidths must be positive finite numbers, got {bandwidths}.")
    inv_two_h2 = jnp.asarray(0.5 / bandwidths**2, x.dtype)
    centre = (jnp.sum(x, axis=0) + jnp.sum(y, axis=0)) / (x.shape[0] + y.shape[0])
    x, y = x - centre, y - centre
    n, m = x.shape[0], y.shape[0]
    block = int(block_size)
    kxx = float(_kernel_sum(x, x, inv_two_h2, min(block, n), True)) / (n * (n - 1))
    kyy = float(_kernel_sum(y, y, inv_two_h2, min(block, m), True)) / (m * (m - 1))
    kxy = float(_kernel_sum(x, y, inv_two_h2, min(block, n), False)) / (n * m)
    return kxx + kyy - 2.0 * kxy


# --- permutation test ----------------------------------------------------------------------


class PermutationTest(NamedTuple):
    """Observed statistic, its permutation p-value, and the mean and standard deviation of
    the statistic under the null (the permuted splits)."""

    statistic: float
    p_value: float
    null_mean: float
    null_std: float


def permutation_test(
    statistic: Callable[[jax.Array, jax.Array], float],
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    key: PRNGKeyArray,
    num_permutations: int = 100,
) -> PermutationTest:
    r"""Two-sample permutation test of "$x$ and $y$ come from the same distribution".

    The pooled sample is split at random into groups of the original sizes
    `num_permutations` times (permutation $i$ from `jax.random.fold_in(key, i)`);
    $p = (1 + \#\{s_i \ge s_{\mathrm{obs}}\})/(1 + P)$. `statistic` must not depend on the
    order of the pooled points beyond the split: fix its own randomness and
    hyperparameters, e.g. `lambda a, b: sliced_wasserstein(a, b, key=k)` or
    `lambda a, b: mmd2(a, b, bandwidths=hs)` with `hs` chosen beforehand.

    **Returns:** a `PermutationTest`.
    """
    x, y = _pair(x, y)
    if isinstance(num_permutations, bool) or not isinstance(num_permutations, int) or num_permutations < 1:
        raise ValueError(f"num_permutations must be a positive integer, got {num_permutations!r}.")
    observed = float(statistic(x, y))
    pooled = jnp.concatenate([x, y])
    n = x.shape[0]
    null = np.empty(num_permutations)
    for i in range(num_permutations):
        perm = pooled[jax.random.permutation(jax.random.fold_in(key, i), pooled.shape[0])]
        null[i] = float(statistic(perm[:n], perm[n:]))
    p_value = (1.0 + np.sum(null >= observed)) / (1.0 + num_permutations)
    return PermutationTest(
        observed, float(p_value), float(null.mean()), float(null.std(ddof=1)) if num_permutations > 1 else float("nan")
    )
