"""scikit-learn's bundled 8×8 handwritten digits (UCI optdigits test set): 1797 images
with 17 levels (0..16), no download needed."""

from __future__ import annotations

import numpy as np

from eqx_impl.data.dataset import Dataset, estimate_sigma_data

NUM_LEVELS = 17
NUM_EXAMPLES = 1797


def digits(*, seed: int = 0, num_test: int = 297) -> Dataset:
    """Digits as levels `0..16`, shape `(1, 8, 8)` (channel first), with labels.

    The split is a permutation drawn from `default_rng(seed)`: its first `num_test`
    indices are the test set, the rest (1500 by default) the training set.

    **Returns:** a discrete `Dataset` with `num_levels = 17`.
    """
    from sklearn.datasets import load_digits  # heavy import, only when used

    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    if isinstance(num_test, bool) or not isinstance(num_test, int | np.integer):
        raise ValueError(f"num_test must be an integer, got {num_test!r}.")
    if not 1 <= num_test <= NUM_EXAMPLES - 1:
        raise ValueError(
            f"num_test must be in 1..{NUM_EXAMPLES - 1} (there are {NUM_EXAMPLES} digits), "
            f"got {num_test}."
        )
    bunch = load_digits()
    # sklearn's stub types the result as Bunch | tuple; without return_X_y it is a Bunch.
    images = np.asarray(bunch.images, dtype=np.float64)  # pyright: ignore[reportAttributeAccessIssue]
    labels = np.asarray(bunch.target, dtype=np.int64)  # pyright: ignore[reportAttributeAccessIssue]
    if images.shape != (NUM_EXAMPLES, 8, 8) or not np.array_equal(images, np.round(images)):
        raise ValueError(f"unexpected digits data from scikit-learn: shape {images.shape}.")
    order = np.random.default_rng(int(seed)).permutation(NUM_EXAMPLES)
    test_index, train_index = order[:num_test], order[num_test:]
    images = images[:, None].astype(np.float32)
    train = images[train_index]
    return Dataset(
        name="digits",
        train=train,
        test=images[test_index],
        num_levels=NUM_LEVELS,
        sigma_data=estimate_sigma_data(train, NUM_LEVELS),
        train_labels=labels[train_index],
        test_labels=labels[test_index],
    )
