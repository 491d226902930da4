"""Progress reporting: `metrics.jsonl` (one JSON object per logged step) and a tqdm bar with
the loss, steps/s and ETA."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

__all__ = ["MetricsLog", "ProgressBar", "read_metrics"]


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a `metrics.jsonl` file (a torn last line from a crash is skipped).

    **Returns:** a list of dicts, in file order.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No metrics file {str(path)!r}; train first (weighted-elbo train --config ...).")
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


class MetricsLog:
    """Append-only JSON-lines log. On resume at step `s`, rows after `s` (written after the
    last checkpoint by a run that then died) are dropped, so the log matches the state."""

    def __init__(self, path: str | Path, *, resume_step: int = 0):
        self.path = Path(path)
        kept = []
        if self.path.is_file() and resume_step > 0:
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        self.path.write_text(text)

    def write(self, row: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        with self.path.open("a") as stream:
            stream.write(json.dumps(clean) + "\n")


class ProgressBar:
    """A tqdm bar over training steps (to stderr; silent when `enabled` is false)."""

    def __init__(self, total: int, initial: int, *, enabled: bool = True):
        self.bar = tqdm(
            total=total,
            initial=initial,
            unit="step",
            dynamic_ncols=True,
            disable=not enabled,
            file=sys.stderr,
            desc="train",
        )

    def update(self, steps: int, loss: float, steps_per_sec: float, *, skipped: int = 0) -> None:
        postfix = {"loss": f"{loss:.4g}", "steps_s": f"{steps_per_sec:.1f}"}
        if skipped:  # steps skipped for a non-finite loss or gradient (train.nonfinite=skip)
            postfix["skipped"] = str(skipped)
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(steps)

    def close(self) -> None:
        self.bar.close()
