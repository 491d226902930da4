"""Deterministic, resumable minibatches.

Batch `k` is a pure function of `(seed, k)`: with `S = N // B` batches per epoch (the
remainder is dropped), batch `k` is slice `k mod S` of the permutation of epoch `k // S`,
and that permutation is drawn from a generator seeded by `(seed, epoch)` only. A training
loop restarted at step `k` therefore sees exactly the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


def _nonneg_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")
    return int(value)


def _check_sizes(num_examples: int, batch_size: int) -> tuple[int, int]:
    num_examples = _nonneg_int("num_examples", num_examples)
    batch_size = _nonneg_int("batch_size", batch_size)
    if batch_size == 0:
        raise ValueError("batch_size must be >= 1.")
    if batch_size > num_examples:
        raise ValueError(
            f"batch_size={batch_size} exceeds the {num_examples} examples; batches drop the "
            "remainder, so no full batch exists. Use a smaller batch_size or more data."
        )
    return num_examples, batch_size


def epoch_permutation(num_examples: int, *, seed: int, epoch: int) -> np.ndarray:
    """The shuffling order of one epoch, a pure function of `(seed, epoch)`.

    **Returns:** an int64 permutation of `range(num_examples)`.
    """
    num_examples = _nonneg_int("num_examples", num_examples)
    seed, epoch = _nonneg_int("seed", seed), _nonneg_int("epoch", epoch)
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch]))
    return rng.permutation(num_examples)


def batch_indices(num_examples: int, batch_size: int, *, seed: int, step: int) -> np.ndarray:
    """Indices of batch `step` (0-based) of the infinite stream.

    **Returns:** an int64 array of `batch_size` distinct indices.
    """
    num_examples, batch_size = _check_sizes(num_examples, batch_size)
    step = _nonneg_int("step", step)
    per_epoch = num_examples // batch_size
    epoch, position = divmod(step, per_epoch)
    order = epoch_permutation(num_examples, seed=seed, epoch=epoch)
    return order[position * batch_size : (position + 1) * batch_size]


def _as_arrays(data: np.ndarray | Sequence[np.ndarray]) -> tuple[bool, tuple[np.ndarray, ...]]:
    single = isinstance(data, np.ndarray)
    arrays = (data,) if single else tuple(np.asarray(a) for a in data)
    if not arrays:
        raise ValueError("data must be an array or a non-empty sequence of arrays.")
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise ValueError(
            f"All arrays must share the leading (example) axis; got lengths {sorted(lengths)}."
        )
    return single, arrays


def batches(
    data: np.ndarray | Sequence[np.ndarray],
    batch_size: int,
    *,
    seed: int,
    start_step: int = 0,
) -> Iterator[np.ndarray | tuple[np.ndarray, ...]]:
    """Infinite stream of fixed-size batches, starting at batch `start_step`.

    `data` is one array `(N, …)` or a sequence of arrays sharing the leading axis (e.g.
    images and labels), which are indexed together. The `k`-th item yielded equals
    `batch_indices(N, batch_size, seed=seed, step=start_step + k)` applied to `data`.

    **Returns:** an iterator of arrays (or tuples of arrays, matching `data`).
    """
    single, arrays = _as_arrays(data)
    num_examples, batch_size = _check_sizes(len(arrays[0]), batch_size)
    seed = _nonneg_int("seed", seed)
    step = _nonneg_int("start_step", start_step)
    per_epoch = num_examples // batch_size

    def generate():
        nonlocal step
        epoch, order = -1, None
        while True:
            this_epoch, position = divmod(step, per_epoch)
            if this_epoch != epoch:  # one permutation per epoch, not per batch
                epoch = this_epoch
                order = epoch_permutation(num_examples, seed=seed, epoch=epoch)
            index = order[position * batch_size : (position + 1) * batch_size]  # pyright: ignore[reportOptionalSubscript]  # set at the first step
            step += 1
            yield arrays[0][index] if single else tuple(a[index] for a in arrays)

    return generate()
