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
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from equinox import AbstractVar
from jax import lax
from jaxtyping import Float

import _checks
from eqx_impl import _xla_cpu
from eqx_impl._floats import as_float, concrete
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

    Written for one example `(dim,)` against the `(K, dim)` components (the component axis
    is the one before the coordinates), so the methods also broadcast over leading axes like
    `GaussianData`'s, and a $\lambda$ shared by a batch costs its transcendentals once. The
    sums and maxima over components and coordinates, and the stored logits, go through
    `eqx_impl._xla_cpu`: the same values, compiled about 20x faster by XLA:CPU for a
    sampler step (`docs/benchmarks.md`).
    """

    weights: Float[Array, " K"] = eqx.field(converter=as_float)
    means: Float[Array, "K dim"] = eqx.field(converter=as_float)
    stds: Float[Array, " K"] | Float[Array, "K dim"] = eqx.field(converter=as_float)

    def __check_init__(self):
        leaves = (self.weights, self.means, self.stds)
        values = [concrete(leaf) for leaf in leaves]
        if any(v is None for v in values):
            # Values are unknown under tracing: check the shapes only, with valid placeholder values.
            w, m, s = (np.full(leaf.shape, 1.0) for leaf in leaves)
            w = w / max(w.size, 1)
            _checks.mixture(w, m, s)
        else:
            _checks.mixture(*values)

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

    def _components(self, z: Float[Array, "*bz dim"], logsnr: LogSNR):
        r"""The mixture at $z_\lambda = z$, broadcast over `z`'s leading axes `*bz` and `logsnr`'s `*bl`.

        **Returns:** logits $\ell_k = \ln w_k + \ln\mathcal N(z; \alpha\mu_k, v_k)$ `(*b, K)`,
        $z - \alpha\mu_k$ `(*b, K, dim)`, $\ln v_k$ `(*bl, K, 1 | dim)`, $\ln\alpha^2$ and
        $\ln\sigma^2$ `(*bl, 1, 1)`.
        """
        _checks.last_axis("z", z, self.dim)
        lam = _logsnr_like(logsnr, z)[..., None, None]
        log_a2, log_s2 = jax.nn.log_sigmoid(lam), jax.nn.log_sigmoid(-lam)
        log_v = jnp.logaddexp(log_a2 + self._log_var(), log_s2)
        scaled_means = jnp.exp(0.5 * log_a2) * self.means
        # Every logit is read K + 1 times by the softmax: computed once (see `_xla_cpu.stored`).
        logits = _xla_cpu.stored(lam, _logits, z, scaled_means, log_v, self.weights)
        return logits, z[..., None, :] - scaled_means, log_v, log_a2, log_s2

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
        return _logsumexp(_logits(x, self.means, self._log_var(), self.weights))

    def log_prob_noisy(self, z: Float[Array, "*batch dim"], logsnr: LogSNR) -> Array:
        r"""$\mathrm{logsumexp}_k(\ln w_k + \ln\mathcal N(z; \alpha\mu_k, v_k))$. **Returns:** shape `broadcast(z.shape[:-1], logsnr.shape)`."""
        return _logsumexp(self._components(z, logsnr)[0])

    def denoise(self, z: Float[Array, "*batch dim"], logsnr: LogSNR) -> Array:
        r"""$\sum_k r_k(\mu_k + \alpha s_k^2(z - \alpha\mu_k)/v_k)$. **Returns:** shape of `z`."""
        logits, diff, log_v, log_a2, _ = self._components(z, logsnr)
        return _posterior_mean(logits, self.means + jnp.exp(0.5 * log_a2 + self._log_var() - log_v) * diff)

    def eps(self, z: Float[Array, "*batch dim"], logsnr: LogSNR) -> Array:
        r"""$\sigma\sum_k r_k(z - \alpha\mu_k)/v_k$ (no division by $\sigma$). **Returns:** shape of `z`."""
        logits, diff, log_v, _, log_s2 = self._components(z, logsnr)
        # σ is common to the components: one multiplication per output entry.
        return jnp.exp(0.5 * log_s2[..., 0, :]) * _posterior_mean(logits, jnp.exp(-log_v) * diff)


def _logits(
    x: Float[Array, "*bx dim"],
    means: Float[Array, "*bl K dim"],
    log_var: Float[Array, "*bl K 1"] | Float[Array, "*bl K dim"],
    weights: Float[Array, " K"],
) -> Array:
    r"""$\ell_k = \ln w_k + \sum_j \ln\mathcal N(x_j; \mu_{kj}, e^{\mathrm{log\_var}_{kj}})$, shape `(*b, K)`.

    An isotropic `log_var` (last axis of length 1) is one variance per component:
    $-\tfrac12\big(e^{-\mathrm{log\_var}}\|x - \mu_k\|^2 + \mathrm{dim}\,(\mathrm{log\_var} + \ln 2\pi)\big)$.
    """
    diff = x[..., None, :] - means
    dim = diff.shape[-1]
    if log_var.shape[-1] == 1:
        log_var = log_var[..., 0]
        log_normal = -0.5 * (jnp.exp(-log_var) * _xla_cpu.sum(diff**2, -1) + dim * (log_var + _LOG_2PI))
    else:
        log_normal = -0.5 * (_xla_cpu.sum(diff**2 * jnp.exp(-log_var) + log_var, -1) + dim * _LOG_2PI)
    return jnp.log(weights) + log_normal


def _max_logit(logits: Float[Array, "*b K"]) -> Float[Array, "*b 1"]:
    r"""$m = \max_k \ell_k$, the shift that keeps $e^{\ell_k - m} \le 1$ (a constant for the gradient)."""
    return lax.stop_gradient(_xla_cpu.max(logits, -1)[..., None])


def _logsumexp(logits: Float[Array, "*b K"]) -> Float[Array, "*b"]:
    r"""$\mathrm{logsumexp}_k\,\ell_k = m + \ln\sum_k e^{\ell_k - m}$, $m = \max_k \ell_k$."""
    m = _max_logit(logits)
    return m[..., 0] + jnp.log(_xla_cpu.sum(jnp.exp(logits - m), -1))


def _posterior_mean(logits: Float[Array, "*b K"], q: Float[Array, "*b K dim"]) -> Float[Array, "*b dim"]:
    r"""$\sum_k r_k q_k$, $r = \mathrm{softmax}_k\,\ell$, as $\sum_k e^{\ell_k - m} q_k / \sum_k e^{\ell_k - m}$ with
    $m = \max_k \ell_k$: one exp per component and one division per output entry."""
    e = jnp.exp(logits - _max_logit(logits))
    return _xla_cpu.sum(e[..., None] * q, -2) / _xla_cpu.sum(e, -1)[..., None]
