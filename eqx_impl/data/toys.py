"""Two-dimensional toy data sets, deterministic given a seed.

Each toy is standardised with its exact *population* moments (closed forms, or
Gauss–Legendre quadrature for the swiss roll), so every coordinate has mean 0 and
variance 1 under the true distribution — not just on the drawn sample — and the map is
recorded in `Dataset.params` as `loc`, `scale` (`x = (x_raw − loc) / scale`). Train and
test come from independent streams of `SeedSequence(seed)`, so neither depends on the
size of the other.
"""

from __future__ import annotations

import math

import numpy as np

from eqx_impl.data.dataset import Dataset, estimate_sigma_data

# Component std / circle radius of the 8-Gaussians toy (FFJORD's 0.5 / 4).
_GMM_STD_RATIO = 0.125
_SWISS_ROLL_T = (1.5 * math.pi, 4.5 * math.pi)
_CHECKERBOARD_CELLS = 4  # a 4×4 board on [−2, 2]², half of its cells filled


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _noise(value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {value!r}.")
    return value


def _streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    train, test = np.random.SeedSequence(int(seed)).spawn(2)
    return np.random.default_rng(train), np.random.default_rng(test)


def _toy(name, draw, num_train, num_test, seed, loc, scale, params=None) -> Dataset:
    num_train, num_test = _count("num_train", num_train), _count("num_test", num_test)
    rng_train, rng_test = _streams(seed)
    loc, scale = np.asarray(loc, np.float64), np.asarray(scale, np.float64)
    train = ((draw(rng_train, num_train) - loc) / scale).astype(np.float32)
    test = ((draw(rng_test, num_test) - loc) / scale).astype(np.float32)
    return Dataset(
        name=name,
        train=train,
        test=test,
        num_levels=None,
        sigma_data=estimate_sigma_data(train),
        params={"loc": loc, "scale": scale, **(params or {})},
    )


def gmm_params(num_modes: int = 8) -> dict[str, np.ndarray]:
    """Equal-weight isotropic Gaussians on a circle, scaled so each coordinate has variance 1.

    With radius $r$ and component std $s = r/8$ the mixture has mean 0 and covariance
    $(r^2/2 + s^2) I$ for `num_modes >= 3`; $r = (1/2 + 1/64)^{-1/2}$ makes it $I$.

    **Returns:** `{"weights": (K,), "means": (K, 2), "stds": (K,)}` in float64, the
    arguments of `GaussianMixture(weights, means, stds)`.
    """
    num_modes = _count("num_modes", num_modes)
    if num_modes < 3:
        raise ValueError(f"num_modes must be >= 3 (modes on a circle), got {num_modes}.")
    radius = 1.0 / math.sqrt(0.5 + _GMM_STD_RATIO**2)
    angles = 2.0 * np.pi * np.arange(num_modes) / num_modes
    return {
        "weights": np.full(num_modes, 1.0 / num_modes),
        "means": radius * np.stack([np.cos(angles), np.sin(angles)], axis=-1),
        "stds": np.full(num_modes, _GMM_STD_RATIO * radius),
    }


def gmm(
    *, num_train: int = 10_000, num_test: int = 2_000, seed: int = 0, num_modes: int = 8
) -> Dataset:
    """Mixture of `num_modes` Gaussians on a circle with exact density (`params`: see
    `gmm_params`; already standardised, so `loc = 0`, `scale = 1`).

    **Returns:** a continuous `Dataset` of shape `(2,)`.
    """
    params = gmm_params(num_modes)

    def draw(rng, n):
        component = rng.choice(num_modes, size=n, p=params["weights"])
        noise = rng.standard_normal((n, 2))
        return params["means"][component] + params["stds"][component, None] * noise

    return _toy("gmm", draw, num_train, num_test, seed, np.zeros(2), np.ones(2), params)


def moons(
    *, num_train: int = 10_000, num_test: int = 2_000, seed: int = 0, noise: float = 0.1
) -> Dataset:
    r"""Two interleaved half circles (each point picks a moon with probability ½),
    plus isotropic Gaussian `noise` in raw units.

    Raw moments: mean $(½, ¼)$, $\mathrm{Var}\,x = ¾ + n^2$,
    $\mathrm{Var}\,y = 9/16 − 1/π + n^2$, $\mathrm{Cov}(x, y) = 1/8 − 1/π$.

    **Returns:** a continuous `Dataset` of shape `(2,)`.
    """
    noise = _noise(noise)

    def draw(rng, n):
        theta = rng.uniform(0.0, np.pi, n)
        inner = rng.random(n) < 0.5
        x = np.where(inner, 1.0 - np.cos(theta), np.cos(theta))
        y = np.where(inner, 0.5 - np.sin(theta), np.sin(theta))
        return np.stack([x, y], axis=-1) + noise * rng.standard_normal((n, 2))

    var = np.array([0.75, 9.0 / 16.0 - 1.0 / math.pi]) + noise**2
    return _toy("moons", draw, num_train, num_test, seed, [0.5, 0.25], np.sqrt(var))


def _swiss_roll_moments(noise: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Exact mean and per-coordinate std of $(t\cos t, t\sin t) + n\,ε$, $t \sim U(a, b)$.

    The integrands are entire functions, so 200-node Gauss–Legendre is exact to rounding.
    """
    a, b = _SWISS_ROLL_T
    nodes, weights = np.polynomial.legendre.leggauss(200)
    t = 0.5 * (b - a) * nodes + 0.5 * (b + a)
    weights = 0.5 * weights  # averages over U(a, b): the interval length cancels
    xy = np.stack([t * np.cos(t), t * np.sin(t)], axis=-1)
    mean = weights @ xy
    var = weights @ (xy - mean) ** 2 + noise**2
    return mean, np.sqrt(var)


def swiss_roll(
    *, num_train: int = 10_000, num_test: int = 2_000, seed: int = 0, noise: float = 0.5
) -> Dataset:
    r"""2-D swiss roll $(t\cos t, t\sin t)$, $t \sim U(1.5π, 4.5π)$, plus Gaussian `noise`
    in raw units (the spiral's radius is $t \le 4.5π$).

    **Returns:** a continuous `Dataset` of shape `(2,)`.
    """
    noise = _noise(noise)

    def draw(rng, n):
        t = rng.uniform(*_SWISS_ROLL_T, n)
        xy = np.stack([t * np.cos(t), t * np.sin(t)], axis=-1)
        return xy + noise * rng.standard_normal((n, 2))

    loc, scale = _swiss_roll_moments(noise)
    return _toy("swiss_roll", draw, num_train, num_test, seed, loc, scale)


def checkerboard(*, num_train: int = 10_000, num_test: int = 2_000, seed: int = 0) -> Dataset:
    r"""Uniform on the 8 cells of a 4×4 board on $[−2, 2]^2$ with
    $\lfloor x \rfloor + \lfloor y \rfloor$ even. Each coordinate is marginally
    $U(−2, 2)$ (mean 0, variance 4/3), so `scale` $= \sqrt{4/3}$.

    **Returns:** a continuous `Dataset` of shape `(2,)`.
    """
    half = _CHECKERBOARD_CELLS // 2

    def draw(rng, n):
        column = rng.integers(0, _CHECKERBOARD_CELLS, n)
        # rows of the same parity as the column: floor(x) + floor(y) even
        row = 2 * rng.integers(0, half, n) + column % 2
        cell = np.stack([column, row], axis=-1) - half
        return cell + rng.random((n, 2))

    scale = np.full(2, math.sqrt(_CHECKERBOARD_CELLS**2 / 12.0))
    return _toy("checkerboard", draw, num_train, num_test, seed, np.zeros(2), scale)
