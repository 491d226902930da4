r"""Sample grids as PNG files (matplotlib only): image tiles for `(N, C, H, W)` samples, a
scatter plot for 2-D samples. Files are written atomically (a temporary file, then
`os.replace`), so a reader never sees a half-written PNG.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from eqx_impl.data.dataset import unit_to_levels

__all__ = ["image_grid", "save_grid"]


def image_grid(
    images: npt.ArrayLike,
    *,
    nrow: int | None = None,
    padding: int = 1,
    pad_value: float = 1.0,
    value_range: tuple[float, float] = (-1.0, 1.0),
    num_levels: int | None = None,
) -> np.ndarray:
    r"""Tile images `(N, C, H, W)` (or `(N, H, W)`) into one `(rows·(H+p)+p, nrow·(W+p)+p, C)` array.

    Values are mapped from `value_range` to $[0, 1]$ and clipped; with `num_levels = V`
    they are first rounded to the nearest level (`unit_to_levels`) and shown as
    $\mathrm{level}/(V-1)$, so a grid shows exactly what `to_levels` would store. Images fill
    rows of `nrow` (default $\lceil\sqrt N\rceil$) left to right; unused cells and the `padding`
    pixels between cells take `pad_value`.

    **Returns:** a float64 array in $[0, 1]$ with `C` = 1 or 3 channels last.
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        raise ValueError(
            f"images must have shape (N, C, H, W) with C = 1 or 3 (or (N, H, W)), N >= 1; got {images.shape}."
        )
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}.")
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}.")
    if num_levels is not None:
        unit = 2.0 * (images - lo) / (hi - lo) - 1.0
        images = unit_to_levels(unit, num_levels) / (num_levels - 1)
    else:
        images = np.clip((images - lo) / (hi - lo), 0.0, 1.0)
    n, c, h, w = images.shape
    nrow = math.ceil(math.sqrt(n)) if nrow is None else int(nrow)
    if nrow < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}.")
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), pad_value)
    for i, image in enumerate(images):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top : top + h, left : left + w] = image.transpose(1, 2, 0)
    return grid


def _atomic_savefig(path: Path, write) -> Path:
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        from eqx_impl.train.files import new_file_mode

        os.chmod(tmp, new_file_mode())  # mkstemp's 0600 -> the mode open() gives (0644 by default)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_grid(
    samples: npt.ArrayLike,
    path: str | os.PathLike,
    *,
    nrow: int | None = None,
    padding: int = 1,
    scale: int | None = None,
    num_levels: int | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    reference: npt.ArrayLike | None = None,
    title: str | None = None,
    limits: float | None = None,
) -> Path:
    r"""Save samples as a PNG at `path` (parent directories are created).

    - Images `(N, C, H, W)` / `(N, H, W)`: the `image_grid` (see its arguments), each pixel
      enlarged to a `scale`×`scale` block (default: the smallest integer making the grid
      at least 256 pixels wide), written as 8-bit RGB by `matplotlib.image.imsave`
      (pixel $= \mathrm{round}(255\,v)$, no colormap; one channel is repeated as grey).
    - Points `(N, 2)`: a scatter plot, over the optional `reference` points (e.g. the
      training data) in grey, with `title`; axes span $\pm$`limits` (default: from the data).

    **Returns:** the `Path` written.
    """
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim == 2 and samples.shape[1] == 2:
        return _save_scatter(samples, Path(path), reference, title, limits)
    if samples.ndim == 2:
        raise ValueError(
            f"2-D samples must have shape (N, 2) for a scatter plot, got {samples.shape}; "
            "images need shape (N, C, H, W)."
        )
    grid = image_grid(samples, nrow=nrow, padding=padding, value_range=value_range, num_levels=num_levels)
    if scale is None:
        scale = max(1, math.ceil(256 / grid.shape[1]))
    if int(scale) < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}.")
    grid = np.repeat(np.repeat(grid, int(scale), axis=0), int(scale), axis=1)
    # 8-bit RGB written as is: pixel = round(255 · value), no colormap in between
    pixels = np.round(255.0 * np.broadcast_to(grid, (*grid.shape[:2], 3))).astype(np.uint8)

    def write(tmp):
        import matplotlib.image

        matplotlib.image.imsave(tmp, pixels, format="png")

    return _atomic_savefig(Path(path), write)


def _save_scatter(points, path, reference, title, limits) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 4), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if reference is not None:
        reference = np.asarray(reference, dtype=np.float64)
        if reference.ndim != 2 or reference.shape[1] != 2:
            raise ValueError(f"reference must have shape (M, 2), got {reference.shape}.")
        ax.scatter(reference[:, 0], reference[:, 1], s=2, c="0.75", lw=0, label="reference")
    ax.scatter(points[:, 0], points[:, 1], s=2, c="C0", lw=0, label="samples")
    if limits is not None:
        ax.set_xlim(-limits, limits)
        ax.set_ylim(-limits, limits)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    if reference is not None:
        ax.legend(loc="upper right", markerscale=4, fontsize="small")
    fig.tight_layout()
    return _atomic_savefig(path, lambda tmp: fig.savefig(tmp, format="png"))
