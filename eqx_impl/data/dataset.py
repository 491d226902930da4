r"""The `Dataset` container and the discrete-level ↔ [−1, 1] map (VDM convention).

Discrete data (digits, images) is stored as integer levels $x \in \{0, …, V-1\}$ (as
float32) so that bits-per-dim can be evaluated on them; the model trains on the bin
centres

$$f = \frac{2(x + \tfrac12)}{V} - 1 \in [-1 + 1/V,\ 1 - 1/V].$$
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

_SPLITS = ("train", "test")


def levels_to_unit(levels: npt.ArrayLike, num_levels: int) -> np.ndarray:
    """Map integer levels in `{0, …, V−1}` to bin centres $2(x+½)/V − 1$ in `[−1, 1]`.

    Computed in float64 and rounded once, so every value is the correctly rounded
    float32 bin centre.

    **Returns:** a float32 array of the shape of `levels`.
    """
    num_levels = _num_levels(num_levels)
    x = np.asarray(levels)
    _check_levels("levels", x, num_levels)
    # The V bin centres, correctly rounded to float32, then looked up (exact, no temporaries).
    centres = (2.0 * (np.arange(num_levels) + 0.5) / num_levels - 1.0).astype(np.float32)
    index_dtype = np.uint8 if num_levels <= 256 else np.intp  # small index temporaries
    return centres[x.astype(index_dtype)]


def unit_to_levels(values: npt.ArrayLike, num_levels: int) -> np.ndarray:
    r"""Inverse of `levels_to_unit`: the nearest level $\mathrm{round}((f+1)V/2 − ½)$, clipped.

    Exact on bin centres; any value in `[−1, 1]` goes to the level whose bin contains it.

    **Returns:** an int64 array of the shape of `values`.
    """
    num_levels = _num_levels(num_levels)
    f = np.asarray(values, dtype=np.float64)
    levels = np.round((f + 1.0) * num_levels / 2.0 - 0.5)
    return np.clip(levels, 0, num_levels - 1).astype(np.int64)


def _num_levels(num_levels: int) -> int:
    if isinstance(num_levels, bool) or not isinstance(num_levels, int | np.integer):
        raise ValueError(f"num_levels must be an integer >= 2, got {num_levels!r}.")
    if num_levels < 2:
        raise ValueError(f"num_levels must be >= 2, got {num_levels}.")
    return int(num_levels)


def _frozen(array: np.ndarray) -> np.ndarray:
    """A read-only view (no copy: image arrays are hundreds of MB)."""
    view = np.asarray(array).view()
    view.setflags(write=False)
    return view


def _check_levels(name: str, x: np.ndarray, num_levels: int) -> None:
    """Raise unless `x` holds integers in `0..num_levels-1`; chunked to bound memory."""
    flat = x.reshape(len(x), -1) if x.ndim else x.reshape(1, -1)
    for start in range(0, len(flat), 4096):
        chunk = flat[start : start + 4096]
        if chunk.size and (
            chunk.min() < 0 or chunk.max() > num_levels - 1 or np.any(chunk != np.round(chunk))
        ):
            raise ValueError(
                f"{name} must hold integer levels in 0..{num_levels - 1} "
                f"(num_levels={num_levels}); found values in [{chunk.min()}, {chunk.max()}]. "
                "Pass the raw levels, not data already mapped to [-1, 1]."
            )


@dataclass(frozen=True, eq=False)
class Dataset:
    r"""A train/test pair of float32 arrays `(N, *shape)` with the metadata training needs.

    - `train`, `test`: stored values — integer levels (as float32) for discrete data,
      real values for continuous data. Read-only.
    - `num_levels`: `V` for discrete data (17 for digits, 256 for images), `None` for
      continuous data.
    - `sigma_data`: standard deviation of `model_data("train")` over all entries (EDM's
      $\sigma_\text{data}$).
    - `train_labels`, `test_labels`: int64 class labels where the source has them.
    - `params`: exact parameters of the generating distribution where known (e.g. the
      Gaussian mixture's `weights`, `means`, `stds`; a toy's standardisation `loc`, `scale`).
    """

    name: str
    train: np.ndarray
    test: np.ndarray
    num_levels: int | None
    sigma_data: float
    train_labels: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    params: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        for split in _SPLITS:
            array = getattr(self, split)
            if not isinstance(array, np.ndarray) or array.dtype != np.float32 or array.ndim < 2:
                raise ValueError(
                    f"Dataset.{split} must be a float32 NumPy array of shape (N, *shape); got "
                    f"{type(array).__name__} {getattr(array, 'dtype', '')} "
                    f"{getattr(array, 'shape', '')}. Cast with .astype(np.float32)."
                )
            if not np.all(np.isfinite(array)):
                raise ValueError(f"Dataset.{split} contains NaN or inf values.")
            object.__setattr__(self, split, _frozen(array))
        if self.train.shape[1:] != self.test.shape[1:]:
            raise ValueError(
                f"train examples have shape {self.train.shape[1:]} but test examples have "
                f"shape {self.test.shape[1:]}; they must match."
            )
        if self.num_levels is not None:
            v = _num_levels(self.num_levels)
            for split in _SPLITS:
                _check_levels(f"Dataset.{split}", getattr(self, split), v)
        for split in _SPLITS:
            labels = getattr(self, f"{split}_labels")
            if labels is None:
                continue
            labels = np.asarray(labels)
            if labels.shape != (len(getattr(self, split)),) or labels.dtype.kind not in "iu":
                raise ValueError(
                    f"{split}_labels must be integers of shape ({len(getattr(self, split))},); "
                    f"got {labels.dtype} {labels.shape}."
                )
            object.__setattr__(self, f"{split}_labels", _frozen(labels.astype(np.int64)))
        sigma = float(self.sigma_data)
        if not np.isfinite(sigma) or sigma <= 0:
            raise ValueError(f"sigma_data must be a positive finite number, got {sigma!r}.")
        object.__setattr__(self, "sigma_data", sigma)
        params = {k: _frozen(np.asarray(v)) for k, v in dict(self.params).items()}
        object.__setattr__(self, "params", types.MappingProxyType(params))

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. `(1, 8, 8)` for digits, `(2,)` for toys."""
        return tuple(self.train.shape[1:])

    @property
    def is_discrete(self) -> bool:
        return self.num_levels is not None

    def model_data(self, split: str = "train") -> np.ndarray:
        """The values a model trains on: `levels_to_unit(levels)` in `[−1, 1]` for discrete
        data, the stored values for continuous data.

        **Returns:** a float32 array `(N, *shape)`.
        """
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}.")
        array = getattr(self, split)
        if self.num_levels is None:
            return array
        return levels_to_unit(array, self.num_levels)

    def __repr__(self) -> str:
        levels = "continuous" if self.num_levels is None else f"num_levels={self.num_levels}"
        return (
            f"Dataset({self.name!r}, train={len(self.train)}, test={len(self.test)}, "
            f"shape={self.shape}, {levels}, sigma_data={self.sigma_data:.4g})"
        )


def estimate_sigma_data(train: npt.ArrayLike, num_levels: int | None = None) -> float:
    r"""Standard deviation over all entries of the training data in model space.

    For discrete data (`num_levels` given) it is computed exactly from the level
    histogram, using that `levels_to_unit` is affine: $\sigma_f = (2/V)\,\sigma_x$.
    """
    if num_levels is None:
        return float(np.std(np.asarray(train, dtype=np.float64)))
    num_levels = _num_levels(num_levels)
    x = np.asarray(train)
    _check_levels("train", x, num_levels)
    counts = np.zeros(num_levels)
    for start in range(0, len(x), 4096):  # chunked: bincount needs intp indices
        chunk = x[start : start + 4096].ravel().astype(np.intp)
        counts += np.bincount(chunk, minlength=num_levels)
    levels = np.arange(num_levels, dtype=np.float64)
    mean = counts @ levels / counts.sum()
    var = counts @ (levels - mean) ** 2 / counts.sum()
    return float(2.0 / num_levels * np.sqrt(var))
