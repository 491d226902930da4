r"""Analytic test distributions as Equinox modules (mirror of `reference.analytic`).

Under $z_\lambda = \alpha x + \sigma\epsilon$ a Gaussian (mixture) stays a Gaussian (mixture), so
$p(z_\lambda)$, $\mathbb E[x \mid z_\lambda]$ and the Bayes-optimal $\hat\epsilon$ are closed forms
(Kingma & Gao 2023; SPEC §8). Methods act on one example of shape `(dim,)` (batch with
`jax.vmap`); they also broadcast over leading axes. Variances are kept as logs, so every
method is finite for $\lambda \in [-30, 30]$ in float32.

`GaussianData` has only static hyperparameters (`var`, `dim`), so it is a pytree without
leaves. `GaussianMixture` keeps `weights`, `means` and `stds` as array leaves: they are
data, not structure, so changing them does not recompile a jitted function, their dtype
selects the precision (float64 arrays under `jax.enable_x64(True)`), and gradients with
respect to them flow (e.g. to fit a mixture). They are validated in `__check_init__` when
concrete; under tracing only their shapes can be checked.
"""

import abc
import functools
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.core  # the Tracer checks below; `import jax` alone does not declare it
import jax.numpy as jnp
import numpy as np
from equinox import AbstractVar
from jax import lax
from jaxtyping import Float

import _checks
from eqx_impl._floats import as_float
from eqx_impl._typing import Array, LogSNR, PRNGKeyArray

_LOG_2PI = math.log(2.0 * math.pi)


def _logsnr_like(logsnr, z: Array) -> Array:
    """The log-SNR in the dtype of `z` (strict promotion: no silent mixing)."""
    return jnp.asarray(logsnr, dtype=z.dtype)


def _x_minus_log1p_series(x: Array) -> Array:
    r"""$x - \ln(1+x) = \sum_{k=2}^{20} (-x)^k/k$, accurate for $|x| < 0.1$."""
    series = jnp.zeros_like(x)
    for k in range(20, 1, -1):
        series = series * (-x) + 1.0 / k
    return x * x * series


class AbstractAnalyticData(eqx.Module):
    r"""Data with exact $p(z_\lambda)$ and Bayes-optimal $\hat\epsilon(z;\lambda) = \mathbb E[\epsilon \mid z_\lambda = z]$."""

    dim: AbstractVar[int]  # the length of one example (a static field or a property)

    @abc.abstractmethod
    def sample(self, num: int, *, key: PRNGKeyArray) -> Array:
        """`num` exact samples, shape `(num, dim)`."""

    @abc.abstractmethod
    def log_prob(self, x: Array) -> Array:
        r"""$\ln p(x)$."""

    @abc.abstractmethod
    def log_prob_noisy(self, z: Array, logsnr: LogSNR) -> Array:
        r"""$\ln p(z_\lambda)$."""

    @abc.abstractmethod
    def denoise(self, z: Array, logsnr: LogSNR) -> Array:
        r"""$\hat x(z;\lambda) = \mathbb E[x \mid z_\lambda = z]$."""

    @abc.abstractmethod
    def eps(self, z: Array, logsnr: LogSNR) -> Array:
        r"""$\hat\epsilon(z;\lambda) = (z - \alpha\hat x)/\sigma$."""

    def optimal_loss_from_noise(
        self, x: Float[Array, "*batch dim"], logsnr: LogSNR, eps: Float[Array, "*batch dim"]
    ) -> Array:
        r"""Per-example loss of the Bayes-optimal model: $\|\epsilon - \hat\epsilon(\alpha x + \sigma\epsilon;\lambda)\|^2$.

        **Returns:** shape `broadcast(x.shape[:-1], logsnr.shape)`.
        """
        _checks.same_shape("x", x, "eps", eps)
        _checks.last_axis("x", x, self.dim)
        lam = _logsnr_like(logsnr, x)[..., None]
        alpha = jnp.exp(0.5 * jax.nn.log_sigmoid(lam))
        sigma = jnp.exp(0.5 * jax.nn.log_sigmoid(-lam))
        z = alpha * x + sigma * eps
        return jnp.sum((eps - self.eps(z, logsnr)) ** 2, axis=-1)

    def optimal_loss(self, logsnr: LogSNR, num: int, *, key: PRNGKeyArray) -> Array:
        r"""Monte Carlo estimate $\frac1n\sum_i \|\epsilon_i - \hat\epsilon(z_{\lambda,i};\lambda)\|^2$ of the Bayes-optimal loss.

        The same `num` draws of $(x, \epsilon)$ serve every entry of `logsnr`.

        **Returns:** the estimate, shape of `logsnr`.
        """
        key_x, key_eps = jax.random.split(key)
        x = self.sample(num, key=key_x)
        eps = jax.random.normal(key_eps, x.shape, x.dtype)
        lam = _logsnr_like(logsnr, x)[..., None]
        return jnp.mean(self.optimal_loss_from_noise(x, lam, eps), axis=-1)


class GaussianData(AbstractAnalyticData):
    r"""$x \sim \mathcal N(0, s^2 I_d)$; $v = \alpha^2 s^2 + \sigma^2$, $\hat x = \alpha s^2 z/v$, $\hat\epsilon = \sigma z / v$."""

    var: float = eqx.field(static=True, converter=float)
    dim: int = eqx.field(static=True)

    def __check_init__(self):
        _checks.positive("var", self.var)
        _checks.dim(self.dim)

    def _log_v(self, logsnr: Array) -> Array:
        r"""$\ln(\alpha^2 s^2 + \sigma^2)$ in log space."""
        return jnp.logaddexp(jax.nn.log_sigmoid(logsnr) + math.log(self.var), jax.nn.log_sigmoid(-logsnr))

    def sample_from_noise(self, noise: Float[Array, "*batch dim"]) -> Float[Array, "*batch dim"]:
        """**Returns:** $s \\cdot$ `noise` for `noise` ~ N(0, I)."""
        _checks.last_axis("noise", noise, self.dim)
        return math.sqrt(self.var) * noise

    def sample(self, num: int, *, key: PRNGKeyArray) -> Float[Array, "num dim"]:
        """**Returns:** `num` draws of $x$, shape `(num, dim)`."""
        return self.sample_from_noise(jax.random.normal(key, (num, self.dim)))

    def log_prob(self, x: Float[Array, "*batch dim"]) -> Float[Array, "*batch"]:
        r"""$-\tfrac12(\|x\|^2/s^2 + d\ln(2\pi s^2))$."""
        _checks.last_axis("x", x, self.dim)
        return -0.5 * (jnp.sum(x**2, axis=-1) / self.var + self.dim * (_LOG_2PI + math.log(self.var)))

    def log_prob_noisy(self, z: Float[Array, "*batch dim"], logsnr: LogSNR) -> Array:
        r"""$\ln\mathcal N(z; 0, vI)$. **Returns:** shape `broadcast(z.shape[:-1], logsnr.shape)`."""
        _checks.last_axis("z", z, self.dim)
        log_v = self._log_v(_logsnr_like(logsnr, z))
        return -0.5 * (jnp.sum(z**2, axis=-1) * jnp.exp(-log_v) + self.dim * (_LOG_2PI + log_v))

    def denoise(self, z: Float[Array, "*batch dim"], logsnr: LogSNR) -> Array:
        r"""$\hat x = \alpha s^2 z / v$. **Returns:** shape of `z`."""
        _checks.last_axis("z", z, self.dim)
        lam = _logsnr_like(logsnr, z)[..., None]
        return jnp.exp(0.5 * jax.nn.log_sigmoid(lam) + math.log(self.var) - self._log_v(lam)) * z

    def eps(self, z: Float[Array, "*batch dim"], logsnr: LogSNR) -> Array:
        r"""$\hat\epsilon = \sigma z / v$ (no division by $\sigma$). **Returns:** shape of `z`."""
        _checks.last_axis("z", z, self.dim)
        lam = _logsnr_like(logsnr, z)[..., None]
        return jnp.exp(0.5 * jax.nn.log_sigmoid(-lam) - self._log_v(lam)) * z

    def loss_mean(self, logsnr: LogSNR) -> Array:
        r"""$\mathbb E\,\ell^* = d\cdot\mathrm{sigmoid}(\lambda + \ln s^2)$. **Returns:** shape of `logsnr`."""
        return self.dim * jax.nn.sigmoid(as_float(logsnr) + math.log(self.var))

    def loss_second_moment(self, logsnr: LogSNR) -> Array:
        r"""$\mathbb E\,\ell^{*2} = v_\ell^2(d^2 + 2d)$, $v_\ell = \mathrm{sigmoid}(\lambda + \ln s^2)$. **Returns:** shape of `logsnr`."""
        v = jax.nn.sigmoid(as_float(logsnr) + math.log(self.var))
        return v**2 * (self.dim**2 + 2 * self.dim)

    def mutual_information(self, logsnr: LogSNR) -> Array:
        r"""$I(x; z_\lambda) = \tfrac d2\,\mathrm{softplus}(\lambda + \ln s^2)$. **Returns:** shape of `logsnr`."""
        return 0.5 * self.dim * jax.nn.softplus(as_float(logsnr) + math.log(self.var))

    def marginal_prior_kl(self, logsnr: LogSNR) -> Array:
        r"""$\mathrm{KL}(\mathcal N(0, vI)\,\|\,\mathcal N(0, I)) = \tfrac d2(u - \ln(1+u))$, $u = v - 1 = \mathrm{sigmoid}(\lambda)(s^2-1)$.

        **Returns:** shape of `logsnr`.
        """
        lam = as_float(logsnr)
        u = jax.nn.sigmoid(lam) * (self.var - 1.0)
        # ln v by log1p unless v <= 1/2 (1 + u cancels); the series where u - ln v cancels.
        log_v = jnp.where(u > -0.5, jnp.log1p(jnp.maximum(u, -0.5)), self._log_v(lam))
        small = jnp.abs(u) < 0.1
        kl = jnp.where(small, _x_minus_log1p_series(jnp.where(small, u, 0.0)), u - log_v)
        return 0.5 * self.dim * kl


class GaussianMixture(AbstractAnalyticData):
    r"""$p(x) = \sum_k w_k\mathcal N(x; \mu_k, \mathrm{diag}(s_k^2))$; `stds` `(K,)` isotropic or `(K, dim)` diagonal.

    With $v_k = \alpha^2 s_k^2 + \sigma^2$ and $r_k(z) \propto w_k\mathcal N(z; \alpha\mu_k, v_k)$,
    $$\hat x = \sum_k r_k\Big(\mu_k + \frac{\alpha s_k^2}{v_k}(z - \alpha\mu_k)\Big), \qquad
      \hat\epsilon = \sum_k r_k \frac{\sigma}{v_k}(z - \alpha\mu_k).$$

    The methods are written for one example, `(dim,)` against the `(K, dim)` components, and
    vectorised with `jax.vmap` over the broadcast leading axes (`_per_example`). A $\lambda$
    shared along an axis (one for a sampler step's whole batch) is not mapped over it, so
    $\alpha$, $\sigma$ and $\ln v_k$ cost $O(K\cdot\mathrm{dim})$ transcendentals per
    value of $\lambda$, not per example.
    Isotropic `stds` keep one variance per component. Sums and maxima over the short axes
    (components, coordinates) are pairwise elementwise ops (`_pairwise`), and the logits are
    stored once (`_stored`): both keep XLA:CPU's generated loops vectorised along the batch.
    """

    weights: Float[Array, " K"] = eqx.field(converter=as_float)
    means: Float[Array, "K dim"] = eqx.field(converter=as_float)
    stds: Float[Array, " K"] | Float[Array, "K dim"] = eqx.field(converter=as_float)

    def __check_init__(self):
        leaves = (self.weights, self.means, self.stds)
        if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            # Values are unknown under tracing: check the shapes only, with valid placeholder values.
            w, m, s = (np.full(leaf.shape, 1.0) for leaf in leaves)
            w = w / max(w.size, 1)
            _checks.mixture(w, m, s)
        else:
            _checks.mixture(*(np.asarray(leaf) for leaf in leaves))

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def _stds_full(self) -> Float[Array, "K dim"]:
        return jnp.broadcast_to(self.stds.reshape(self.num_components, -1), self.means.shape)

    def _log_var(self) -> Float[Array, "K 1"] | Float[Array, "K dim"]:
        r"""$\ln s_k^2$: `(K, 1)` for isotropic `stds` (one variance per component), else `(K, dim)`."""
        return 2.0 * jnp.log(self.stds.reshape(self.num_components, -1))

    def _components(self, z: Float[Array, " dim"], lam: Float[Array, ""], stored: Callable[..., Array]):
        r"""The mixture at $z_\lambda = z$ for one example; `stored` computes the logits (`_per_example`).

        **Returns:** logits $\ell_k = \ln w_k + \ln\mathcal N(z; \alpha\mu_k, v_k)$ `(K,)`,
        $z - \alpha\mu_k$ `(K, dim)`, $\ln v_k$ `(K, 1 | dim)`, $\ln\alpha^2$, $\ln\sigma^2$.
        """
        log_a2, log_s2 = jax.nn.log_sigmoid(lam), jax.nn.log_sigmoid(-lam)
        log_v = jnp.logaddexp(log_a2 + self._log_var(), log_s2)
        scaled_means = jnp.exp(0.5 * log_a2) * self.means
        logits = stored(_logits, log_v, z, scaled_means, self.weights)
        return logits, z - scaled_means, log_v, log_a2, log_s2

    def sample_from_noise(
        self, u: Float[Array, "*batch"], noise: Float[Array, "*batch dim"]
    ) -> Float[Array, "*batch dim"]:
        r"""Component $k$: the first with $u < \sum_{j\le k} w_j$; then $x = \mu_k + s_k\odot$ `noise`.

        **Returns:** samples, shape of `noise`.
        """
        _checks.last_axis("noise", noise, self.dim)
        u = jnp.asarray(u, self.weights.dtype)  # a uniform needs no more precision than the weights
        # k = #{j : u >= w_1 + ... + w_j} (= searchsorted "right"; K is small, so a
        # comparison beats a search loop), capped for a cumulative sum that rounds below 1.
        k = jnp.sum(u[..., None] >= jnp.cumsum(self.weights), axis=-1)
        k = jnp.minimum(k, self.num_components - 1)
        return self.means[k] + self._stds_full()[k] * noise

    def sample(self, num: int, *, key: PRNGKeyArray) -> Float[Array, "num dim"]:
        """**Returns:** `num` exact draws, shape `(num, dim)`."""
        key_u, key_noise = jax.random.split(key)
        dtype = self.means.dtype
        u = jax.random.uniform(key_u, (num,), dtype)
        return self.sample_from_noise(u, jax.random.normal(key_noise, (num, self.dim), dtype))

    def log_prob(self, x: Float[Array, "*batch dim"]) -> Float[Array, "*batch"]:
        r"""$\mathrm{logsumexp}_k(\ln w_k + \ln\mathcal N(x; \mu_k, s_k^2))$."""
        _checks.last_axis("x", x, self.dim)
        log_var = self._log_var()
        one = lambda x, _, stored: _logsumexp(stored(_logits, log_var, x, self.means, self.weights))  # noqa: E731
        return _per_example(one, x, jnp.zeros((), x.dtype))  # no λ: a shared dummy

    def log_prob_noisy(self, z: Float[Array, "*batch dim"], logsnr: LogSNR) -> Array:
        r"""$\mathrm{logsumexp}_k(\ln w_k + \ln\mathcal N(z; \alpha\mu_k, v_k))$. **Returns:** shape `broadcast(z.shape[:-1], logsnr.shape)`."""
        _checks.last_axis("z", z, self.dim)
        one = lambda z, lam, stored: _logsumexp(self._components(z, lam, stored)[0])  # noqa: E731
        return _per_example(one, z, _logsnr_like(logsnr, z))

    def denoise(self, z: Float[Array, "*batch dim"], logsnr: LogSNR) -> Array:
        r"""$\sum_k r_k(\mu_k + \alpha s_k^2(z - \alpha\mu_k)/v_k)$. **Returns:** shape of `z`."""
        _checks.last_axis("z", z, self.dim)

        def one(z, lam, stored):
            logits, diff, log_v, log_a2, _ = self._components(z, lam, stored)
            return _posterior_mean(logits, self.means + jnp.exp(0.5 * log_a2 + self._log_var() - log_v) * diff)

        return _per_example(one, z, _logsnr_like(logsnr, z))

    def eps(self, z: Float[Array, "*batch dim"], logsnr: LogSNR) -> Array:
        r"""$\sigma\sum_k r_k(z - \alpha\mu_k)/v_k$ (no division by $\sigma$). **Returns:** shape of `z`."""
        _checks.last_axis("z", z, self.dim)

        def one(z, lam, stored):
            logits, diff, log_v, _, log_s2 = self._components(z, lam, stored)
            # σ is common to the components: one multiplication per output entry.
            return jnp.exp(0.5 * log_s2) * _posterior_mean(logits, jnp.exp(-log_v) * diff)

        return _per_example(one, z, _logsnr_like(logsnr, z))


def _per_example(fn: Callable[..., Array], z: Float[Array, "*batch dim"], lam: Array) -> Array:
    r"""`fn(z_i, lam_i, stored)` for one example, mapped over `broadcast(z.shape[:-1], lam.shape)`.

    One `jax.vmap` per batch axis (`_map_axes`), and an operand of size 1 along an axis is
    not mapped over it: a $\lambda$ shared by a batch (a scalar, or a grid of values against
    a set of samples) costs its transcendentals once per value, not once per example.
    `stored` is `_stored` with its predicate taken here, from the arguments before mapping,
    so that these vmaps do not batch it (a batched predicate, as under a caller's `jax.vmap`
    over $\lambda$, turns the `lax.cond` into a `select`, which XLA fuses like any other op).
    """
    traced = [a for a in (lam, z) if isinstance(a, jax.core.Tracer) and a.size]
    stored = functools.partial(_stored, traced[0].reshape(-1)[0] if traced else None)
    batch = jnp.broadcast_shapes(z.shape[:-1], lam.shape)
    z = z.reshape((1,) * (len(batch) + 1 - z.ndim) + z.shape)
    lam = lam.reshape((1,) * (len(batch) - lam.ndim) + lam.shape)
    return _map_axes(lambda z, lam: fn(z, lam, stored), z, lam)


def _map_axes(fn: Callable[..., Array], z: Array, lam: Array) -> Array:
    """`fn` mapped over the leading axes of `z` `(*b, dim)` and `lam` `(*b)`; along each, an
    operand of size 1 is broadcast rather than mapped."""
    if lam.ndim == 0:
        return fn(z, lam)
    z_axis, lam_axis = (0 if a.shape[0] != 1 else None for a in (z, lam))
    if z_axis is None and lam_axis is None:
        return _map_axes(fn, z[0], lam[0])[None]
    inner = jax.vmap(functools.partial(_map_axes, fn), in_axes=(z_axis, lam_axis))
    return inner(z if z_axis == 0 else z[0], lam if lam_axis == 0 else lam[0])


def _logits(
    log_var: Array, x: Float[Array, " dim"], means: Float[Array, "K dim"], weights: Float[Array, " K"]
) -> Float[Array, " K"]:
    r"""$\ell_k = \ln w_k + \ln\mathcal N(x; \mu_k, e^{\mathrm{log\_var}_k})$."""
    return jnp.log(weights) + _log_normal(x - means, log_var)


def _stored(keep: Array | None, fn: Callable[..., Array], *args: Array) -> Array:
    r"""`fn(*args)`, computed once and kept in memory where XLA:CPU would recompute it.

    XLA:CPU fuses a cheap elementwise producer into every consumer. A softmax reads each
    logit $K + 1$ times ($K$ in the maximum, once in the exponential), so fused logits are
    recomputed $K + 1$ times per entry, and the `(K, dim)` differences are stored instead:
    about 1.4x slower sampling of a mixture. `lax.optimization_barrier` would say "store
    this", but XLA:CPU drops it; a `lax.cond` is a fusion boundary that it keeps. Both
    branches are `fn`, so the predicate (from the traced scalar `keep`) cannot change the
    result. CPU backend only; with `keep` None (nothing traced) `fn` is simply called. XLA
    still moves a branch made only of cheap ops out of the conditional (it does so when
    $\lambda$ is a constant, whose $\ln v_k$ then fold away); the logits are then fused as
    without `_stored`: slower, with the same values.
    """
    if keep is None or jax.default_backend() != "cpu":
        return fn(*args)
    return lax.cond(keep == keep, fn, fn, *args)


# Reductions over an axis at most this long are pairwise elementwise ops (`_sum`, `_max`).
_PAIRWISE_MAX = 64


def _sum(x: Array, axis: int) -> Array:
    """`jnp.sum(x, axis)`; pairwise (`_pairwise`) over a short axis."""
    return _pairwise(jnp.add, x, axis) if x.shape[axis] <= _PAIRWISE_MAX else jnp.sum(x, axis)


def _max(x: Array, axis: int) -> Array:
    """`jnp.max(x, axis)`; pairwise (`_pairwise`) over a short axis."""
    return _pairwise(jnp.maximum, x, axis) if x.shape[axis] <= _PAIRWISE_MAX else jnp.max(x, axis)


def _pairwise(op: Callable[[Array, Array], Array], x: Array, axis: int) -> Array:
    r"""Reduce `axis` of `x` with the associative binary `op` in $\lceil\log_2 n\rceil$ rounds.

    Each round applies `op` to the first and the last $\lfloor n/2\rfloor$ entries (the middle
    one of an odd $n$ is carried over): the sum or maximum, up to the order of summation
    (pairwise: error $O(u\log n)$). Why not `jnp.sum`: XLA:CPU hands a `reduce` over a large
    array to a library kernel (YNNPACK) that is slow when the reduced axis is short (the K
    components, the dim coordinates) and the batch long, while these slices and elementwise
    ops fuse with their neighbours into loops vectorised along the contiguous batch axes
    (about 10x faster for the mixture's sampler step). Over long axes (> `_PAIRWISE_MAX`) the
    library kernel wins and compiles faster, so `_sum` and `_max` use it there.

    **Returns:** `x` without `axis`.
    """
    axis = axis % x.ndim
    while (n := x.shape[axis]) > 1:
        half = n // 2
        pairs = op(lax.slice_in_dim(x, 0, half, axis=axis), lax.slice_in_dim(x, n - half, n, axis=axis))
        x = jnp.concatenate([pairs, lax.slice_in_dim(x, half, n - half, axis=axis)], axis) if n % 2 else pairs
    return jnp.squeeze(x, axis)


def _log_normal(
    diff: Float[Array, "K dim"], log_var: Float[Array, "K 1"] | Float[Array, "K dim"]
) -> Float[Array, " K"]:
    r"""$\sum_j \ln\mathcal N(\mathrm{diff}_{kj}; 0, e^{\mathrm{log\_var}_{kj}})$ over the coordinates $j$.

    An isotropic `log_var` (axis 1 of length 1) is one variance per component:
    $-\tfrac12\big(e^{-\mathrm{log\_var}}\|\mathrm{diff}\|^2 + \mathrm{dim}\,(\mathrm{log\_var} + \ln 2\pi)\big)$.
    """
    dim = diff.shape[1]
    if log_var.shape[1] == 1:
        log_var = jnp.squeeze(log_var, 1)
        return -0.5 * (jnp.exp(-log_var) * _sum(diff**2, 1) + dim * (log_var + _LOG_2PI))
    return -0.5 * (_sum(diff**2 * jnp.exp(-log_var) + log_var, 1) + dim * _LOG_2PI)


def _max_logit(logits: Float[Array, " K"]) -> Float[Array, ""]:
    r"""$m = \max_k \ell_k$, the shift that keeps $e^{\ell_k - m} \le 1$ (a constant for the gradient)."""
    return lax.stop_gradient(_max(logits, 0))


def _logsumexp(logits: Float[Array, " K"]) -> Float[Array, ""]:
    r"""$\mathrm{logsumexp}_k\,\ell_k = m + \ln\sum_k e^{\ell_k - m}$, $m = \max_k \ell_k$ (constant for the gradient)."""
    m = _max_logit(logits)
    return m + jnp.log(_sum(jnp.exp(logits - m), 0))


def _posterior_mean(logits: Float[Array, " K"], q: Float[Array, "K dim"]) -> Float[Array, " dim"]:
    r"""$\sum_k r_k q_k$, $r = \mathrm{softmax}_k\,\ell$, as $\sum_k e^{\ell_k - m} q_k / \sum_k e^{\ell_k - m}$ with
    $m = \max_k \ell_k$: one exp per component and one division per output entry."""
    e = jnp.exp(logits - _max_logit(logits))
    return _sum(e[:, None] * q, 0) / _sum(e, 0)
