r"""PNG plots of a run: the loss curve, and the weighting against the proposal density
(what the adaptive or learned schedule converged to)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eqx_impl.train.files import atomic_write_bytes

__all__ = ["plot_loss_curve", "plot_proposal"]


def _figure(width=6.0, height=3.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    import io

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    return atomic_write_bytes(path, buffer.getvalue())


def plot_loss_curve(rows: list[dict], path: str | Path, *, title: str | None = None) -> Path:
    """Training loss (mean of $\\hat{\\mathcal L}$ per logging window) against step, with
    steps/s on a second axis.

    **Returns:** the path written.
    """
    rows = [r for r in rows if r.get("loss") is not None]
    if not rows:
        raise ValueError("No logged losses to plot; the run has not logged a step yet.")
    steps = np.array([r["step"] for r in rows])
    loss = np.array([r["loss"] for r in rows], dtype=np.float64)
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(steps, loss, color="C0", lw=1.2, label="loss")
    if np.all(loss > 0) and loss.max() / loss.min() > 20:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(r"weighted loss $\frac{1}{2}\,w/p\cdot\ell$ (nats)", color="C0")
    rates = [r.get("steps_per_sec") for r in rows]
    if any(v is not None for v in rates):
        ax2 = ax.twinx()
        ax2.plot(steps, [np.nan if v is None else v for v in rates], color="C1", lw=0.8, alpha=0.7)
        ax2.set_ylabel("steps/s", color="C1")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_proposal(
    logsnr: np.ndarray,
    weighting: np.ndarray,
    density: np.ndarray,
    path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    r"""The weighting $w(\lambda)$ and the proposal density $p(\lambda)$, each normalised to
    integrate to 1 on the grid, so their shapes compare directly.

    **Returns:** the path written.
    """
    logsnr = np.asarray(logsnr, np.float64)
    fig = _figure()
    ax = fig.add_subplot()
    for values, label in ((weighting, r"weighting $w(\lambda)$"), (density, r"proposal $p(\lambda)$")):
        values = np.asarray(values, np.float64)
        area = np.trapezoid(values, logsnr)
        ax.plot(logsnr, values / area if area > 0 else values, label=label, lw=1.2)
    ax.set_xlabel(r"log-SNR $\lambda$")
    ax.set_ylabel("density (normalised)")
    ax.legend()
    if title:
        ax.set_title(title)
    return _save(fig, path)
