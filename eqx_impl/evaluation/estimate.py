r"""Monte Carlo estimates with standard errors, and the batching loop evaluations share.

An `Estimate` is a mean over per-example values with its standard error
$\mathrm{SE} = s/\sqrt n$ ($s$ the sample standard deviation, `ddof=1`), so
`mean ± 1.96·stderr` is an approximate 95% confidence interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

__all__ = ["Estimate", "estimate", "map_batches"]


class Estimate(NamedTuple):
    """A mean and its standard error (both Python floats)."""

    mean: float
    stderr: float

    def interval(self, z: float = 1.96) -> tuple[float, float]:
        """`(mean - z·stderr, mean + z·stderr)`; `z = 1.96` is the normal 95% interval."""
        return self.mean - z * self.stderr, self.mean + z * self.stderr

    def __str__(self) -> str:
        return f"{self.mean:.6g} ± {self.stderr:.2g}"


def estimate(values: npt.ArrayLike) -> Estimate:
    r"""Mean and standard error $s/\sqrt n$ of per-example values, computed in float64.

    One value gives a standard error of `nan` (undefined), not 0.

    **Returns:** an `Estimate`.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("estimate() needs at least one value, got an empty array.")
    if values.size == 1:
        return Estimate(float(values[0]), math.nan)
    return Estimate(float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size)))


def check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    return int(batch_size)


def map_batches(
    fn: Callable[..., object],
    arrays: tuple,
    *,
    batch_size: int,
    progress: bool = False,
    desc: str = "evaluating",
):
    """Apply `fn(*chunks, indices)` to consecutive chunks of the leading axis of `arrays`.

    Every chunk is padded to `batch_size` (by repeating its last row) so that a jitted `fn`
    compiles once; `indices` are the global example indices (int32, the padding repeats the
    last one) so `fn` can derive per-example keys with `jax.random.fold_in`, which makes
    results independent of `batch_size`. Outputs (a pytree of arrays with a leading batch
    axis) are trimmed and concatenated as NumPy arrays.

    **Returns:** the pytree of `fn`'s outputs for all examples.
    """
    batch_size = check_batch_size(batch_size)
    num = len(arrays[0])
    if num == 0:
        raise ValueError("nothing to evaluate: the data has no examples.")
    if any(len(a) != num for a in arrays):
        raise ValueError(f"arrays have different lengths {[len(a) for a in arrays]}.")
    batch_size = min(batch_size, num)
    outputs = []
    starts = range(0, num, batch_size)
    for start in tqdm(starts, desc=desc, disable=not progress, leave=False):
        stop = min(start + batch_size, num)
        index = np.minimum(np.arange(start, start + batch_size), stop - 1)
        chunks = tuple(np.asarray(a)[index] if isinstance(a, np.ndarray) else a[index] for a in arrays)
        out = fn(*chunks, index.astype(np.int32))
        outputs.append(jax.tree.map(lambda leaf, n=stop - start: np.asarray(leaf)[:n], out))
    return jax.tree.map(lambda *leaves: np.concatenate(leaves, axis=0), *outputs)
