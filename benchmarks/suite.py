r"""The benchmark suite: one command, one table, with the machine it ran on.

Runs, in one process:

1. **eqx / reference throughput** (`eqx_vs_reference.py`): the weighted loss at batch 4096
   and 18-step Heun sampling of a 2-D mixture at batch 10,000.
2. **Adaptive schedule variance** relative to the optimum, $\mathrm{Var}/\mathrm{Var}_{\min}$, on
   SPEC §5's closed-form Gaussian problem ($d = 4$, $s^2 = 0.5$, Sigmoid(2) on $[-10, 10]$,
   exact losses $\ell = v\chi^2_d$; 3000 batches of 128, decay 0.995, `target="rms"`): the
   reference's number is the one `python -m reference` prints, the eqx `Adaptive` runs the
   same loop as a jitted `lax.scan`. Both variances are float64 quadratures (`estimator_variance`).
3. **Training-step overhead** (`train_overhead.py`): the library step against a minimal
   hand-written jitted step, ratio of median step times.
4. **Sampler error against NFE** (`samplers_nfe.py`): Heun, Euler, DDIM, DPM-Solver-2,
   DPM-Solver++(2M) (ODE and SDE), ancestral on a Gaussian mixture with its exact denoiser; fitted orders and errors.
5. **U-Net training step** (`unet_throughput.py`): images/s and MFU (GPU only).
6. **Sampler compile time** (`sampler_compile.py`): compile and run time of sampling the
   digits U-Net and the mixture, one compiled step called $N$ times against the loop unrolled
   in one program (and, for the mixture, one `lax.scan`).
   The same for `evaluate --metrics bpd,fd` on the digits U-Net (`evaluate_compile.py`, each
   variant in a fresh process).

Absolute times depend on the machine and its load; the ratios are measured side by side.

    python -m benchmarks.suite [--quick] [--markdown docs/benchmarks.md] [--plot PNG] [--skip unet ...]

With `--markdown PATH`, an existing file's block between `<!-- benchmarks:TAG -->` and
`<!-- /benchmarks:TAG -->` (TAG = `--tag`, default the JAX backend: `cpu`, `gpu`) is replaced by
the machine line and the table; a file without those markers is written whole.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import platform
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

SECTIONS = ("ratios", "adaptive", "overhead", "samplers", "unet", "compile")


@dataclasses.dataclass
class Row:
    benchmark: str
    measure: str
    value: str
    notes: str = ""


def machine() -> str:
    """One line: CPU model and cores, JAX version, backend and device."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    device = jax.devices()[0]
    return (
        f"{cpu}, {cores} cores usable{load}; JAX {jax.__version__}, backend {jax.default_backend()} "
        f"({device.device_kind}, {jax.device_count()} device(s)); Python {platform.python_version()}; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


# --- the pieces --------------------------------------------------------------------------


def run_ratios(quick: bool) -> list[Row]:
    from benchmarks import eqx_vs_reference as evr

    repeats = 2 if quick else 5
    rows = []
    for name, fn in (
        ("eqx/reference: weighted loss, MLP, batch 4096", evr.bench_loss),
        ("eqx/reference: Heun 18 steps, 2-D GMM, batch 10,000", evr.bench_heun),
    ):
        t_ref, t_eqx = fn(repeats)
        rows.append(
            Row(name, "throughput ratio", f"{t_ref / t_eqx:.1f}x", f"reference {t_ref:.3g} s, eqx {t_eqx:.3g} s")
        )
    return rows


ADAPTIVE_PROBLEM = {"d": 4, "s2": 0.5, "lo": -10.0, "hi": 10.0, "steps": 3000, "batch": 128, "decay": 0.995}


def reference_adaptive_ratio() -> float:
    """$\\mathrm{Var}/\\mathrm{Var}_{\\min}$ of the reference `Adaptive`, from `python -m reference`'s own check."""
    from reference.__main__ import check_importance

    for label, error, _ in check_importance():
        if "adaptive" in label:
            return 1.0 + float(error)  # the check reports Var / Var_min - 1
    raise RuntimeError("python -m reference no longer reports the adaptive schedule's variance")


def eqx_adaptive_ratio(seed: int = 0) -> float:
    """The same loop as the reference check with `eqx_impl.Adaptive`, jitted in one `lax.scan`."""
    import eqx_impl as E
    import reference as R

    p = ADAPTIVE_PROBLEM
    d, s2, lo, hi = p["d"], p["s2"], p["lo"], p["hi"]
    adaptive, w = E.Adaptive(lo, hi, decay=p["decay"], target="rms"), E.Sigmoid(2.0)
    batch = p["batch"]

    @jax.jit
    def train(key):
        def body(state, key):
            k_u, k_chi = jax.random.split(key)
            u = jnp.mod(jax.random.uniform(k_u) + jnp.arange(batch) / batch, 1.0)
            lam, _ = adaptive.sample(state, u)
            loss = jax.nn.sigmoid(lam + np.log(s2)) * jax.random.chisquare(k_chi, d, (batch,))
            return adaptive.update(state, lam, w(lam) * loss), None

        state, _ = jax.lax.scan(body, adaptive.init(), jax.random.split(key, p["steps"]))
        return state

    state = train(jax.random.key(seed))
    # The trained eqx state, read by the reference's proposal: its density in float64.
    ref_adaptive = R.Adaptive(lo, hi, n_bins=adaptive.n_bins, decay=p["decay"], target="rms")
    ref_state = R.AdaptiveState(np.asarray(state.ema, np.float64), np.asarray(state.count))

    data, w_ref = R.GaussianData(s2, d), R.Sigmoid(2.0)
    m1, m2 = data.loss_mean, data.loss_second_moment
    density = lambda lam: ref_adaptive.density(ref_state, lam)
    var = R.estimator_variance(w_ref, density, m1, m2, lo, hi, points=ref_adaptive.edges)
    return var / R.optimal_variance(w_ref, m1, m2, lo, hi)


def run_adaptive(quick: bool) -> list[Row]:
    del quick  # the loop is cheap: always the full 3000 steps
    p = ADAPTIVE_PROBLEM
    problem = f"d={p['d']}, s²={p['s2']}, Sigmoid(2), λ∈[{p['lo']:g},{p['hi']:g}], {p['steps']} steps × {p['batch']}"
    t0 = time.perf_counter()
    ref = reference_adaptive_ratio()
    t1 = time.perf_counter()
    eqx_ratio = eqx_adaptive_ratio()
    t2 = time.perf_counter()
    return [
        Row("adaptive schedule (reference)", "Var / Var_min", f"{ref:.3f}", f"{problem}; {t1 - t0:.1f} s"),
        Row(
            "adaptive schedule (eqx, jitted scan)",
            "Var / Var_min",
            f"{eqx_ratio:.3f}",
            f"same problem; {t2 - t1:.1f} s",
        ),
    ]


def run_overhead(quick: bool) -> list[Row]:
    from benchmarks import train_overhead

    blocks, steps = (3, 50) if quick else (7, 200)
    lib, hand = train_overhead.measure(blocks=blocks, steps=steps, batch=256)
    return [
        Row(
            "training step: library / hand-written",
            "time ratio",
            f"{lib / hand:.3f}",
            f"MLP 128×3, batch 256; {1e3 * lib:.2f} vs {1e3 * hand:.2f} ms/step; {blocks} blocks of {steps}",
        )
    ]


def run_samplers(quick: bool, plot_path: Path | None) -> list[Row]:
    from benchmarks import samplers_nfe as sn

    kwargs = {"batch": 4096, "ode_batch": 512, "fine_steps": 512} if quick else {}
    result = sn.measure(sn.DEFAULT_NFES, **kwargs)
    print(sn.format_table(result))
    if plot_path is not None:
        print(f"plot: {sn.plot(result, plot_path)}")
    rows = []
    last = len(result.nfe["euler"]) - 1
    floor = f"exact samples {result.sliced_w2_floor:.1e}"
    for name in sn.SAMPLERS:
        nfe = result.nfe[name]
        sw2 = f"sliced W2 {result.sliced_w2[name][last]:.1e} at NFE {nfe[last]} ({floor})"
        if name in sn.ODE_SAMPLERS:
            errs = " / ".join(f"{e:.1e}" for e in result.ode_error[name][2:])
            at = "/".join(str(n) for n in nfe[2:])
            notes = f"ODE error {errs} at NFE {at}; {sw2}"
            rows.append(Row(f"sampler {name}", "ODE error order", f"{result.order(name, 16):.2f}", notes))
        else:
            sws = " / ".join(f"{e:.1e}" for e in result.sliced_w2[name][2:])
            at = "/".join(str(n) for n in nfe[2:])
            rows.append(
                Row(
                    f"sampler {name}",
                    "sliced W2",
                    f"{result.sliced_w2[name][last]:.1e}",
                    f"{sws} at NFE {at} ({floor})",
                )
            )
    return rows


def run_unet(quick: bool) -> list[Row]:
    from benchmarks import unet_throughput as ut

    r = ut.measure("configs/digits.yaml", steps=5 if quick else 20, warmup=2 if quick else 3)
    print(r.summary())
    shape = "×".join(str(s) for s in r.image_shape)
    return [
        Row(
            "U-Net training step (configs/digits.yaml)",
            "images/s",
            f"{r.images_per_second:,.0f}",
            f"batch {r.batch}, {shape}, {r.params:,} params, {r.precision}; {1e3 * r.seconds_per_step:.1f} ms/step; "
            f"build {r.build_seconds:.1f} s, compile {r.compile_seconds:.0f} s",
        ),
        Row(
            "U-Net training step (configs/digits.yaml)",
            "MFU",
            "n/a" if r.mfu is None else f"{100 * r.mfu:.2f} %",
            f"{r.flops_per_step / 1e9:.2f} GFLOP/step (convolutions and matmuls, counted); " + r.mfu_text(),
        ),
    ]


def run_compile(quick: bool) -> list[Row]:
    from benchmarks import sampler_compile as sc

    sizes = {"steps": 8, "other_steps": 6, "gmm_batch": 2000, "repeats": 2} if quick else {}
    timings = {(t.model, t.variant): t for t in sc.run_all(**sizes)}
    rows = []
    for model in dict.fromkeys(m for m, _ in timings):
        base, now = timings[(model, "unrolled")], timings[(model, "stepped")]
        notes = (
            f"run {base.run_s:.3g} s → {now.run_s:.3g} s (throughput ratio {base.run_s / now.run_s:.2f}); "
            f"first call at another step count {base.new_steps_s:.1f} s → {now.new_steps_s:.1f} s"
        )
        if (model, "scan") in timings:
            scan = timings[(model, "scan")]
            notes += f"; one lax.scan: compile {scan.compile_s:.1f} s, run {scan.run_s:.3g} s"
        rows.append(
            Row(
                f"sampling {model}",
                "compile: unrolled → stepped",
                f"{base.compile_s:.1f} → {now.compile_s:.1f} s",
                notes,
            )
        )
    return rows + run_evaluate_compile(quick)


def run_evaluate_compile(quick: bool) -> list[Row]:
    from benchmarks import evaluate_compile as ec

    sizes = {"num": 100, "steps": 8, "repeats": 1} if quick else {}
    timings = {t.variant: t for t in ec.run_all(**sizes)}
    base, now = timings["unrolled"], timings["stepped"]
    num, steps = sizes.get("num", 400), sizes.get("steps", 24)
    notes = (
        f"run {base.run_s:.3g} s → {now.run_s:.3g} s (throughput ratio {base.run_s / now.run_s:.2f}); "
        f"each variant in a fresh process; bpd {base.bpd:.4f} / {now.bpd:.4f}, FD {base.fd:.4g} / {now.fd:.4g}"
    )
    return [Row(f"evaluate bpd+fd, U-Net digits, {num}×{steps} steps", "compile: unrolled → stepped",
                f"{base.compile_s:.1f} → {now.compile_s:.1f} s", notes)]  # fmt: skip


# --- output -------------------------------------------------------------------------------


def text_table(rows: list[Row]) -> str:
    widths = [max(len(getattr(r, f)) for r in rows) for f in ("benchmark", "measure", "value")]
    widths = [max(w, len(h)) for w, h in zip(widths, ("benchmark", "measure", "value"), strict=True)]
    head = f"{'benchmark':<{widths[0]}}  {'measure':<{widths[1]}}  {'value':>{widths[2]}}  notes"
    lines = [head, "-" * len(head)]
    lines += [f"{r.benchmark:<{widths[0]}}  {r.measure:<{widths[1]}}  {r.value:>{widths[2]}}  {r.notes}" for r in rows]
    return "\n".join(lines)


def markdown_table(rows: list[Row], header: str, command: str) -> str:
    lines = [f"Machine: {header}  ", f"Command: `{command}`", "", "| benchmark | measure | value | notes |"]
    lines.append("|---|---|--:|---|")
    lines += [f"| {r.benchmark} | {r.measure} | {r.value} | {r.notes} |" for r in rows]
    return "\n".join(lines)


def write_markdown(path: Path, block: str, tag: str) -> None:
    start, end = f"<!-- benchmarks:{tag} -->", f"<!-- /benchmarks:{tag} -->"
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
        text = pattern.sub(lambda _: f"{start}\n{block}\n{end}", text)
    else:
        text = f"{start}\n{block}\n{end}\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here (see the module doc)")
    parser.add_argument("--tag", default=None, help="marker tag for --markdown (default: the JAX backend)")
    parser.add_argument("--plot", type=Path, default=None, help="save the sampler NFE plot here (PNG)")
    parser.add_argument("--skip", nargs="*", default=[], choices=SECTIONS, help="sections to leave out")
    parser.add_argument("--verbose", action="store_true", help="show the pieces' own output")
    args = parser.parse_args(argv)

    header = machine()
    print(f"machine: {header}\n", flush=True)
    runners = {
        "ratios": lambda: run_ratios(args.quick),
        "adaptive": lambda: run_adaptive(args.quick),
        "overhead": lambda: run_overhead(args.quick),
        "samplers": lambda: run_samplers(args.quick, args.plot),
        "unet": lambda: run_unet(args.quick),
        "compile": lambda: run_compile(args.quick),
    }
    rows: list[Row] = []
    start = time.perf_counter()
    for name in SECTIONS:
        if name in args.skip:
            continue
        t0 = time.perf_counter()
        print(f"[{name}] running ...", flush=True)
        out = io.StringIO()
        with contextlib.redirect_stdout(out if not args.verbose else sys.stdout):
            rows += runners[name]()
        print(f"[{name}] done in {time.perf_counter() - t0:.0f} s", flush=True)
    total = time.perf_counter() - start
    print(f"\nmachine: {header}")
    print(text_table(rows))
    print(f"({'quick' if args.quick else 'full'} run, {total:.0f} s)")
    if args.markdown is not None:
        command = "python -m benchmarks.suite" + " ".join([""] + (argv if argv is not None else sys.argv[1:]))
        block = markdown_table(rows, header + f"; {'quick' if args.quick else 'full'} run, {total:.0f} s", command)
        write_markdown(args.markdown, block, args.tag or jax.default_backend())
        print(f"table written to {args.markdown}")


if __name__ == "__main__":
    main()
