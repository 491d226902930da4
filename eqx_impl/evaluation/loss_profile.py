r"""Where a model's loss lives: the denoising loss per noise level, the ELBO integrand and the
training objective's integrand over $\lambda$ (Kingma & Gao 2023, eq. 8; VDM eq. 17).

For data $x$ (test examples) and a grid $\lambda_1 < \dots < \lambda_K$ on
$[\lambda_{\min}, \lambda_{\max}]$, the per-level loss

$$\ell(\lambda) = \mathbb E_{x,\epsilon}\,\|\epsilon - \hat\epsilon(\alpha_\lambda x + \sigma_\lambda\epsilon;\lambda)\|^2$$

is estimated with one fresh $\epsilon$ per example and grid point (standard error over
examples). From it:

- the ELBO integrand $-d\,\mathrm{ELBO}/d\lambda = \tfrac12\,\ell(\lambda)$; divided by
  $D\ln 2$ it is in bits/dim per unit $\lambda$, and its area
  $\tfrac12\int\ell\,d\lambda/(D\ln2)$ is the diffusion part of the VDM bound
  (`diffusion_bpd` of `negative_elbo`);
- the training objective's integrand $\tfrac12\,w(\lambda)\,\ell(\lambda)$, whose area is
  $\mathcal L_w$ (SPEC §3);
- the normalised densities $\ell/\!\int\ell$ and $w\ell/\!\int w\ell$ over $\lambda$: where the
  bound and the training objective put their mass.

Areas use the trapezoidal rule on the uniform grid, per example, so their standard errors
cover the data and the noise; the grid adds a bias of order $h^2$ ($h$ the grid step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

from eqx_impl._typing import Array, PRNGKeyArray
from eqx_impl.evaluation.estimate import Estimate, estimate, map_batches
from eqx_impl.losses import eps_loss

__all__ = ["LossProfile", "loss_profile", "plot_loss_profile"]


@eqx.filter_jit
def _level_losses(eps_model, x, index, key, logsnr, k):
    """$\\ell$ at one grid point `k` for a batch: `eps_loss` (one example) vmapped over the
    batch; `logsnr` and `k` are traced, so one compilation serves the whole grid. Noise of
    example `i`: `normal(fold_in(fold_in(key, i), k))`. (The grid is a Python loop, not
    `lax.map`: convolutions run many times slower inside an XLA:CPU loop.)

    **Returns:** `(batch,)`.
    """

    def one(x, i):
        eps = jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, i), k), x.shape, x.dtype)
        return eps_loss(eps_model, x, logsnr, eps)

    return jax.vmap(one)(x, index)


def _trapezoid(values: np.ndarray, logsnr: np.ndarray) -> np.ndarray | np.floating:
    return np.trapezoid(values, logsnr, axis=-1)


@dataclass(frozen=True)
class LossProfile:
    r"""Result of `loss_profile`.

    - `logsnr`: the grid, shape `(K,)`;
    - `loss`, `loss_stderr`: $\ell(\lambda_k)$ (nats, summed over the $D$ dimensions) and its
      standard error over examples;
    - `weighting`: $w(\lambda_k)$, or `None` when no weighting was given;
    - `diffusion`: `Estimate` of $\tfrac12\int\ell\,d\lambda$ (nats per example);
    - `weighted`: `Estimate` of $\mathcal L_w = \tfrac12\int w\,\ell\,d\lambda$ (nats), or `None`;
    - `num_dims`: $D$; `num_examples`: examples used.
    """

    logsnr: np.ndarray
    loss: np.ndarray
    loss_stderr: np.ndarray
    weighting: np.ndarray | None
    diffusion: Estimate
    weighted: Estimate | None
    num_dims: int
    num_examples: int

    def __post_init__(self):
        if (self.weighting is None) != (self.weighted is None):
            raise ValueError("LossProfile: give both `weighting` and `weighted`, or neither.")

    @property
    def _bits(self) -> float:
        return 1.0 / (self.num_dims * math.log(2.0))

    @property
    def elbo_integrand_bpd(self) -> np.ndarray:
        r"""$\tfrac12\,\ell(\lambda)/(D\ln 2)$: bits/dim per unit $\lambda$. **Returns:** `(K,)`."""
        return 0.5 * self.loss * self._bits

    @property
    def weighted_integrand_bpd(self) -> np.ndarray | None:
        r"""$\tfrac12\,w(\lambda)\,\ell(\lambda)/(D\ln 2)$. **Returns:** `(K,)`, or `None` without a weighting."""
        return None if self.weighting is None else self.weighting * self.elbo_integrand_bpd

    @property
    def diffusion_bpd(self) -> Estimate:
        """The area under `elbo_integrand_bpd`: the diffusion part of the bound in bits/dim.
        **Returns:** an `Estimate`."""
        return Estimate(self.diffusion.mean * self._bits, self.diffusion.stderr * self._bits)

    @property
    def weighted_bpd(self) -> Estimate | None:
        """The area under `weighted_integrand_bpd` ($\\mathcal L_w$ in bits/dim). **Returns:**
        an `Estimate`, or `None` without a weighting."""
        if self.weighted is None:
            return None
        return Estimate(self.weighted.mean * self._bits, self.weighted.stderr * self._bits)

    def density(self, which: str = "elbo") -> np.ndarray:
        r"""The integrand normalised to area 1 on the grid: $\ell/\!\int\ell$ (`"elbo"`),
        $w\ell/\!\int w\ell$ (`"weighted"`) or $w/\!\int w$ (`"weighting"`).

        **Returns:** `(K,)`.
        """
        if which == "elbo":
            values = self.loss
        elif which in ("weighted", "weighting"):
            if self.weighting is None:
                raise ValueError(f"density({which!r}) needs a weighting; pass weighting= to loss_profile.")
            values = self.weighting * (self.loss if which == "weighted" else 1.0)
        else:
            raise ValueError(f"which must be 'elbo', 'weighted' or 'weighting', got {which!r}.")
        area = _trapezoid(values, self.logsnr)
        if not area > 0:
            raise ValueError(f"the {which} integrand has no positive area on the grid (area {area}).")
        return values / area

    def median_logsnr(self, which: str = "elbo") -> float:
        r"""The $\lambda$ that splits `density(which)` into two halves (linear in the cumulative
        trapezoid): half the mass lies at noisier levels.

        **Returns:** a float.
        """
        p, lam = self.density(which), self.logsnr
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(lam))])
        return float(np.interp(0.5, cdf / cdf[-1], lam))

    def to_dict(self) -> dict[str, float]:
        """Scalars for logging: `diffusion_bpd` (+ `_stderr`), the medians of the densities,
        and with a weighting `weighted_bpd` (+ `_stderr`) and its median, each prefixed
        `loss_profile_`."""
        out = {
            "loss_profile_diffusion_bpd": self.diffusion_bpd.mean,
            "loss_profile_diffusion_bpd_stderr": self.diffusion_bpd.stderr,
            "loss_profile_elbo_median_logsnr": self.median_logsnr("elbo"),
        }
        if self.weighted_bpd is not None:
            out["loss_profile_weighted_bpd"] = self.weighted_bpd.mean
            out["loss_profile_weighted_bpd_stderr"] = self.weighted_bpd.stderr
            out["loss_profile_weighted_median_logsnr"] = self.median_logsnr("weighted")
        return out

    def curves(self) -> dict[str, list[float] | int]:
        """The curves on the grid, as lists (JSON): `logsnr`, `loss`, `loss_stderr`,
        `elbo_integrand_bpd`, `elbo_density`, and with a weighting `weighting`,
        `weighted_integrand_bpd`, `weighted_density`; plus `num_dims`, `num_examples`."""
        out: dict[str, list[float] | int] = {
            "logsnr": self.logsnr.tolist(),
            "loss": self.loss.tolist(),
            "loss_stderr": self.loss_stderr.tolist(),
            "elbo_integrand_bpd": self.elbo_integrand_bpd.tolist(),
            "elbo_density": self.density("elbo").tolist(),
        }
        weighting, weighted_integrand = self.weighting, self.weighted_integrand_bpd
        if weighting is not None and weighted_integrand is not None:  # both or neither
            out["weighting"] = weighting.tolist()
            out["weighted_integrand_bpd"] = weighted_integrand.tolist()
            out["weighted_density"] = self.density("weighted").tolist()
        out["num_dims"] = self.num_dims
        out["num_examples"] = self.num_examples
        return out


def _check_inputs(data: npt.ArrayLike, logsnr_min: float, logsnr_max: float, num_logsnr: int) -> np.ndarray:
    r"""`loss_profile`'s inputs checked: finite $\lambda_{\min} < \lambda_{\max}$, a grid of at least
    3 points, and real-valued data `(N, *dims)`.

    **Returns:** `data` as a NumPy array.
    """
    if not (math.isfinite(logsnr_min) and math.isfinite(logsnr_max) and logsnr_min < logsnr_max):
        raise ValueError(
            f"need finite logsnr_min < logsnr_max (the training interval), got [{logsnr_min}, {logsnr_max}]."
        )
    if isinstance(num_logsnr, bool) or not isinstance(num_logsnr, int | np.integer) or num_logsnr < 3:
        raise ValueError(f"num_logsnr must be an integer >= 3 (grid points for the quadrature), got {num_logsnr!r}.")
    data = np.asarray(data)
    if data.ndim < 2:
        raise ValueError(f"data must have shape (N, *dims) with N examples, got {data.shape}.")
    if not np.issubdtype(data.dtype, np.floating):
        raise ValueError(
            f"data must hold the model's real values (Dataset.model_data), got dtype {data.dtype}; "
            "integer levels go through levels_to_unit first."
        )
    return data


def _example_losses(
    eps_model, data: np.ndarray, key: PRNGKeyArray, logsnr: Array, batch_size: int, progress: bool
) -> np.ndarray:
    r"""$\|\epsilon - \hat\epsilon\|^2$ of every example at every grid point $\lambda_k$ of `logsnr`
    (`_level_losses`, one compiled call per batch and grid point), checked finite.

    **Returns:** float64 `(N, K)`.
    """

    def run(x, index):
        levels = [_level_losses(eps_model, x, index, key, logsnr[k], jnp.int32(k)) for k in range(len(logsnr))]
        return jnp.stack(levels, axis=1)

    losses = np.asarray(
        map_batches(run, (data,), batch_size=batch_size, progress=progress, desc="loss profile"), np.float64
    )
    if not np.all(np.isfinite(losses)):
        raise ValueError("the model's loss is not finite at some noise level; check the checkpoint.")
    return losses


def loss_profile(
    eps_model,
    data: npt.ArrayLike,
    *,
    key: PRNGKeyArray,
    logsnr_min: float,
    logsnr_max: float,
    weighting=None,
    num_logsnr: int = 64,
    batch_size: int = 256,
    progress: bool = False,
) -> LossProfile:
    r"""Estimate $\ell(\lambda)$ of `eps_model` on `data` (model space, shape `(N, *dims)`: the
    values the model sees, e.g. `Dataset.model_data("test")`) at `num_logsnr` evenly spaced
    $\lambda$ from `logsnr_min` to `logsnr_max`, and the areas $\tfrac12\int\ell\,d\lambda$
    and, with `weighting` ($w(\lambda)$, e.g. the run's), $\tfrac12\int w\,\ell\,d\lambda$.

    Example `i` uses the key `fold_in(key, i)` (then `fold_in(·, k)` at grid point `k`), so
    results do not depend on `batch_size`; batches run through one `eqx.filter_jit`-ed function.

    **Returns:** a `LossProfile`.
    """
    data = _check_inputs(data, logsnr_min, logsnr_max, num_logsnr)
    grid64 = np.linspace(float(logsnr_min), float(logsnr_max), int(num_logsnr))
    logsnr = jnp.asarray(grid64, data.dtype)
    losses = _example_losses(eps_model, data, key, logsnr, batch_size, progress)
    grid = np.asarray(logsnr, np.float64)  # the levels the model saw (in its dtype)
    mean = losses.mean(axis=0)
    se = losses.std(axis=0, ddof=1) / math.sqrt(len(losses)) if len(losses) > 1 else np.full_like(mean, np.nan)
    w = weighted = None
    if weighting is not None:
        w = np.asarray(weighting(logsnr), np.float64)
        weighted = estimate(0.5 * _trapezoid(losses * w, grid))
    return LossProfile(
        logsnr=grid,
        loss=mean,
        loss_stderr=se,
        weighting=w,
        diffusion=estimate(0.5 * _trapezoid(losses, grid)),
        weighted=weighted,
        num_dims=int(np.prod(data.shape[1:])),
        num_examples=len(data),
    )


def _plot_integrand(ax, profile: LossProfile, title: str | None) -> None:
    r"""Top panel: the ELBO integrand $\tfrac12\ell/(D\ln2)$ with a 95% band, and with a weighting
    the objective's $\tfrac12 w\ell$ on a second axis; the legend gives their areas (bits/dim)."""
    lam = profile.logsnr
    y, band = profile.elbo_integrand_bpd, 1.96 * 0.5 * profile.loss_stderr * profile._bits
    d = profile.diffusion_bpd
    ax.plot(
        lam,
        y,
        color="C0",
        lw=1.4,
        label=rf"ELBO: $\frac{{1}}{{2}}\ell(\lambda)$, area {d.mean:.4g} ± {d.stderr:.2g} bits/dim",
    )
    ax.fill_between(lam, y - band, y + band, color="C0", alpha=0.25, lw=0, label="95% interval")
    wb = profile.weighted_bpd
    if wb is not None:  # with a weighting
        ax2 = ax.twinx()
        ax2.plot(lam, profile.weighted_integrand_bpd, color="C1", lw=1.2, ls="--")
        ax2.set_ylabel(r"$\frac{1}{2}w\ell$ (bits/dim per unit $\lambda$)", color="C1")
        ax.plot(
            [],
            [],
            color="C1",
            ls="--",
            label=rf"objective: $\frac{{1}}{{2}}w\ell$, area {wb.mean:.4g} ± {wb.stderr:.2g} bits/dim",
        )
    ax.set_ylabel(r"$-d\,\mathrm{ELBO}/d\lambda$ (bits/dim per unit $\lambda$)")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title or f"loss per noise level ({profile.num_examples} test examples)", fontsize=10)


def _plot_densities(ax, profile: LossProfile, weighting_name: str | None) -> None:
    r"""Bottom panel: the densities $\ell/\!\int\ell$ and, with a weighting, $w\ell/\!\int w\ell$
    and $w/\!\int w$ over $\lambda$, with vertical lines at the medians."""
    lam = profile.logsnr
    ax.plot(lam, profile.density("elbo"), color="C0", lw=1.4, label=r"ELBO $\ell/\!\int\ell$")
    if profile.weighting is not None:
        name = weighting_name or "w"
        ax.plot(
            lam,
            profile.density("weighted"),
            color="C1",
            lw=1.4,
            ls="--",
            label=rf"objective $w\ell/\!\int w\ell$ ({name})",
        )
        ax.plot(lam, profile.density("weighting"), color="0.5", lw=1.0, ls=":", label=r"weighting $w/\!\int w$")
    for which, color in (("elbo", "C0"), ("weighted", "C1")):
        if which == "elbo" or profile.weighting is not None:
            ax.axvline(profile.median_logsnr(which), color=color, lw=0.8, alpha=0.6)
    ax.set_xlabel(r"log-SNR $\lambda$ (noisier $\leftarrow$ $\rightarrow$ cleaner); vertical lines: medians")
    ax.set_ylabel(r"density over $\lambda$")
    ax.legend(fontsize=8)


def plot_loss_profile(
    profile: LossProfile, path: str | Path, *, weighting_name: str | None = None, title: str | None = None
) -> Path:
    r"""Two panels against $\lambda$: (top) the ELBO integrand $\tfrac12\ell/(D\ln2)$ with a
    95% band, its area the diffusion bits/dim; (bottom) the normalised densities of
    $\ell$ (ELBO), $w\ell$ (training objective) and $w$ alone.

    **Returns:** the path written (PNG).
    """
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from eqx_impl.train.files import atomic_write_bytes

    fig = Figure(figsize=(6.4, 6.0), dpi=120)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    _plot_integrand(top, profile, title)
    _plot_densities(bottom, profile, weighting_name)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    return atomic_write_bytes(path, buffer.getvalue())
