"""Shared machinery of the study: where results go, the stated CPU budget against the
measured wall time, and atomic JSON output."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"

__all__ = ["RESULTS", "Budget", "write_json"]


@dataclass
class Budget:
    """A stated CPU budget (wall seconds on this box) and the measured wall time."""

    name: str
    seconds: float
    start: float = field(default_factory=time.perf_counter)

    def announce(self) -> None:
        print(
            f"[{self.name}] budget {self.seconds / 60:.1f} min wall "
            f"({os.cpu_count()} CPU cores, JAX {jax.__version__}, backend {jax.default_backend()})",
            flush=True,
        )

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def report(self) -> dict[str, Any]:
        """Print and return the measured wall time beside the budget.

        **Returns:** `{"budget_s", "wall_s", "cpu_count", "machine", "jax", "backend"}`.
        """
        print(f"[{self.name}] measured wall time {self.elapsed / 60:.1f} min (budget {self.seconds / 60:.1f} min)")
        return {
            "budget_s": self.seconds,
            "wall_s": round(self.elapsed, 1),
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "jax": jax.__version__,
            "backend": jax.default_backend(),
        }


def write_json(path: Path, payload: dict) -> Path:
    """Write `payload` as indented JSON (atomically). **Returns:** the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=_plain) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")
    return path


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
