"""Command line: `weighted-elbo` (or `python -m eqx_impl`) with subcommands

    train     train from a YAML/JSON config (+ --set overrides); writes a run directory
    sample    draw samples from a run's checkpoint and write a PNG
    evaluate  compute metrics (bpd, fd, gmm_nll, ...) of a run's checkpoint
    plot      redraw the loss curve and the proposal plot of a run

Examples:

    weighted-elbo train --config configs/digits.yaml
    weighted-elbo train --config configs/gmm.yaml --set train.steps=2000 \\
        objective.weighting=sigmoid objective.weighting_args.bias=3
    weighted-elbo sample --run-dir runs/digits --num 100 --sampler heun --steps 32
    weighted-elbo evaluate --run-dir runs/digits --metrics bpd,fd

Start-up: JAX loads only when a command needs it, so `--help` and configuration errors come
back in about a second. Before JAX loads, the CLI

- turns on JAX's persistent compilation cache in `$WEIGHTED_ELBO_CACHE/jax` (default
  `~/.cache/weighted-elbo/jax`), so a second `train`, `sample` or `evaluate` of the same
  shapes reuses the compiled programs. `WEIGHTED_ELBO_COMPILATION_CACHE=0` turns it off, a
  path moves it; a `JAX_COMPILATION_CACHE_DIR` of your own wins.
- keeps XLA's C++ log lines (the "slow compile" alarms) off the terminal by setting
  `TF_CPP_MIN_LOG_LEVEL=3`, unless you set it yourself or pass `--verbose`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from eqx_impl.names import METRICS, SAMPLERS, canonical_name

__all__ = ["main", "parser"]

_EPILOG = "Errors in the config, checkpoints or the pre-flight check exit with status 2."
CACHE_ENV = "WEIGHTED_ELBO_CACHE"  # as in eqx_impl.data.download (not imported: it loads JAX)
COMPILATION_CACHE_ENV = "WEIGHTED_ELBO_COMPILATION_CACHE"


def _add_overrides(p: argparse.ArgumentParser, what: str, example: str) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        nargs="+",
        action="extend",
        default=[],
        help=f"override {what} (values read as YAML), e.g. {example}",
    )


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--verbose", action="store_true", help="also show XLA's own log lines (slow-compile alarms and the like)"
    )


def parser() -> argparse.ArgumentParser:
    """**Returns:** the argument parser of `weighted-elbo`."""
    top = argparse.ArgumentParser(
        prog="weighted-elbo",
        description="Train and evaluate diffusion models with weighted-ELBO objectives (Kingma & Gao 2023).",
        epilog=_EPILOG,
    )
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train_parser(sub)
    _add_sample_parser(sub)
    _add_evaluate_parser(sub)
    _add_plot_parser(sub)
    return top


def _add_train_parser(sub) -> None:
    """`train`: the config, its overrides, the run directory and the session's switches."""
    p = sub.add_parser(
        "train",
        help="train a model from a config",
        description="Train a model "
        "from a YAML/JSON config and write its run directory (config.yaml, "
        "metrics.jsonl, checkpoints/, loss_curve.png, samples.png, eval.json).",
    )
    p.add_argument("--config", type=Path, help="YAML or JSON config file (default: built-in defaults)")
    _add_overrides(p, "config entries", "train.steps=2000 objective.weighting=sigmoid objective.weighting_args.bias=3")
    p.add_argument("--run-dir", type=Path, help="output directory (default: train.run_dir)")
    p.add_argument(
        "--no-preflight", action="store_true", help="skip the eqx-vs-reference check of the objective before training"
    )
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="start at step 0 even if the run directory has checkpoints (they are replaced)",
    )
    p.add_argument("--no-eval", action="store_true", help="skip sampling and evaluation at the end")
    _add_common(p)
    p.add_argument(
        "--stop-after",
        type=int,
        metavar="STEPS",
        help="train at most STEPS more steps in this session (counted from the step it resumes at), "
        "then stop with a checkpoint; run the command again to go on",
    )
    _add_multi_host(p)


def _add_multi_host(p: argparse.ArgumentParser) -> None:
    """`train`'s multi-host group: `--coordinator`, `--num-processes`, `--process-id`."""
    g = p.add_argument_group(
        "multi-host data parallelism",
        "run the same command in every process, with train.data_parallel=true and its own "
        "--process-id (see docs/tutorials/scaling.md)",
    )
    g.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0, reachable from every host")
    g.add_argument("--num-processes", type=int, metavar="N", help="number of processes (hosts)")
    g.add_argument("--process-id", type=int, metavar="I", help="this process's index, 0 to N-1 (0 writes the run)")


def _add_sample_parser(sub) -> None:
    """`sample`: the run, how many samples, the sampler and its steps, the outputs, the class."""
    p = sub.add_parser(
        "sample",
        help="draw samples from a trained run",
        description="Draw samples from a run's checkpoint (EMA weights) and save a "
        "PNG grid (images) or scatter plot (2-D data).",
    )
    _add_run_args(p)
    p.add_argument("--num", type=int, help="number of samples (default: eval.num_samples)")
    p.add_argument("--sampler", help=f"{', '.join(SAMPLERS[:-1])} or {SAMPLERS[-1]} (default: eval.sampler)")
    p.add_argument("--steps", type=int, help="sampling steps (default: eval.sampling_steps)")
    p.add_argument("--seed", type=int, help="sampling seed (default: eval.seed)")
    p.add_argument("--out", type=Path, help="PNG path (default: RUN_DIR/samples.png)")
    p.add_argument("--npy", type=Path, help="also save the samples as a .npy array")
    p.add_argument(
        "--class",
        dest="label",
        metavar="C",
        help="class-conditional model: samples of class C, or 'all' for a grid with one row per "
        "class (--num samples per class, default 10)",
    )
    p.add_argument(
        "--guidance",
        type=float,
        metavar="W",
        help="classifier-free guidance scale with --class (1: conditional, 0: unconditional; default: eval.guidance)",
    )


def _add_evaluate_parser(sub) -> None:
    """`evaluate`: the run, the metrics, `eval.*` overrides and the JSON output."""
    p = sub.add_parser(
        "evaluate",
        help="evaluate a trained run",
        description=f"Compute metrics of a run's checkpoint (EMA weights): {', '.join(METRICS)} "
        "(loss_profile: the loss per noise level; writes RUN_DIR/loss_profile.png).",
    )
    _add_run_args(p)
    p.add_argument("--metrics", help="comma-separated metrics (default: eval.metrics)")
    _add_overrides(p, "eval.* settings of the run's config", "eval.num_samples=500 eval.sampling_steps=64")
    p.add_argument("--out", type=Path, help="JSON path (default: RUN_DIR/evaluation.json)")


def _add_plot_parser(sub) -> None:
    """`plot`: the run directory and where to write its PNGs."""
    p = sub.add_parser(
        "plot",
        help="plot a run's loss curve and proposal",
        description="Write loss_curve.png (from metrics.jsonl) and proposal.png "
        "(weighting vs the proposal density at the newest checkpoint).",
    )
    p.add_argument("--run-dir", type=Path, required=True, help="a run directory written by train")
    p.add_argument("--out-dir", type=Path, help="where to write the PNGs (default: RUN_DIR)")
    p.add_argument(
        "--verbose", action="store_true", help="also show XLA's own log lines (slow-compile alarms and the like)"
    )


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", type=Path, required=True, help="a run directory written by train")
    p.add_argument("--checkpoint", type=Path, help="checkpoint file (default: the newest usable one)")
    p.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA")
    _add_common(p)


def _format_metrics(values: dict) -> str:
    parts = []
    for k, v in values.items():
        if isinstance(v, dict | list):  # curves (loss_profile): in the JSON, not on one line
            continue
        parts.append(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(parts)


def _cmd_train(args) -> int:
    from eqx_impl.train.config import ConfigError
    from eqx_impl.train.config_io import load_config

    multi_host = (args.coordinator, args.num_processes, args.process_id)
    if any(v is not None for v in multi_host):
        if any(v is None for v in multi_host):
            raise ConfigError("--coordinator, --num-processes and --process-id go together; pass all three.")
        if args.num_processes < 1 or not 0 <= args.process_id < args.num_processes:
            raise ConfigError(
                f"--num-processes must be >= 1 and --process-id in [0, --num-processes), got "
                f"{args.num_processes} and {args.process_id}; number the processes 0 ... N-1."
            )
    if args.stop_after is not None and args.stop_after < 1:
        raise ConfigError(f"stop_after (--stop-after) must be an integer >= 1 or None, got {args.stop_after!r}.")
    config = load_config(args.config, args.overrides)  # before JAX loads: errors come back at once
    from eqx_impl.train import parallel, train

    if args.num_processes is not None:
        # Before anything touches a device: afterwards jax.devices() lists every process's.
        parallel.initialize(*multi_host)
    t0 = time.perf_counter()
    result = train(
        config,
        run_dir=args.run_dir,
        resume=not args.no_resume,
        preflight=False if args.no_preflight else None,
        progress=not args.no_progress,
        stop_after=args.stop_after,
        evaluate=not args.no_eval,
    )
    tm = result.timings
    step = int(result.state.step)
    if not parallel.is_main_process():
        print(f"process {args.process_id}: trained to step {step}; process 0 wrote {result.run_dir}")
        return 0
    print(f"run directory: {result.run_dir}")
    print(_step_summary(step, result.config.train.steps, result.rows, tm))
    ev = result.evaluation
    if "bpd" in ev:
        print(f"bpd (test, VDM bound): {ev['bpd']:.4f} ± {ev['bpd_stderr']:.4f}")
    if "fd" in ev:
        print(f"FD (classifier features, {ev.get('fd_num_samples')} samples vs test): {ev['fd']:.4f}")
    others = {k: v for k, v in ev.items() if not k.startswith(("bpd", "fd", "nats", "recon", "prior", "diffusion"))}
    if others:
        print(_format_metrics(others))
    if (result.run_dir / "samples.png").is_file() and not args.no_eval:
        print(f"samples: {result.run_dir / 'samples.png'}")
    print(f"wall time: {time.perf_counter() - t0:.1f} s")
    return 0


def _step_summary(step: int, total: int, rows: list[dict], timings: dict) -> str:
    """`step 2050: loss 17.4; 35.2 steps/s after compilation`; the loss and the rate only
    when they were measured (a session of one dispatch has no rate after compilation)."""
    line = f"step {step}"
    loss = rows[-1].get("loss") if rows else None
    if loss is not None:
        line += f": loss {loss:.5g}"
    if "steps_per_sec" in timings:
        line += f"; {timings['steps_per_sec']:.1f} steps/s after compilation"
    if step < total:
        line += f" ({total - step} of train.steps={total} to go: run the same command to resume)"
    return line


def _check_sample_flags(args) -> None:
    from eqx_impl.train.config import ConfigError

    if args.sampler is not None:
        sampler = canonical_name(args.sampler, SAMPLERS)
        if sampler is None:
            raise ConfigError(f"--sampler {args.sampler!r}: choose one of {', '.join(SAMPLERS)}.")
        args.sampler = sampler
    for flag, value, least in (("--num", args.num, 1), ("--steps", args.steps, 2), ("--seed", args.seed, 0)):
        if value is not None and value < least:
            raise ConfigError(
                f"{flag} {value}: must be an integer >= {least} (or left out for the run's eval.* value)."
            )


def _class_labels(args, config, num: int):
    """The class of each sample for `--class C|all` (`None` without `--class`), checked against
    the run's `model.args.num_classes` before JAX loads; `--guidance` needs `--class`.

    **Returns:** `(labels or None, samples per grid row or None)`.
    """
    import math

    import numpy as np

    from eqx_impl.train.config import ConfigError

    num_classes = config.model.args.get("num_classes")
    if num_classes is None:
        if args.label is not None or args.guidance is not None:
            flag = "--class" if args.label is not None else "--guidance"
            raise ConfigError(
                f"{flag}: this run's model is unconditional (no model.args.num_classes), so it takes no class "
                "and no guidance scale; train a class-conditional model with --set model.args.num_classes=10."
            )
        return None, None
    if args.guidance is not None and (args.label is None or not math.isfinite(args.guidance)):
        raise ConfigError(
            f"--guidance {args.guidance}: give a finite scale together with --class C or --class all "
            "(guidance steers samples towards a class)."
        )
    if args.label is None:
        return None, None
    if args.label == "all":
        per_class = args.num or 10
        return np.repeat(np.arange(num_classes), per_class), per_class
    try:
        label = int(args.label)
    except ValueError:
        label = -1
    if not 0 <= label < num_classes:
        raise ConfigError(
            f"--class {args.label}: the run's data set has the classes 0..{num_classes - 1}; "
            "pass one of them, or --class all."
        )
    return np.full(num, label), None


def _cmd_sample(args) -> int:
    from eqx_impl.train.rundir import run_config

    _check_sample_flags(args)  # before JAX loads and the run is rebuilt
    config = run_config(args.run_dir)  # a clear error if this is not a run directory
    labels, per_row = _class_labels(args, config, args.num or config.eval.num_samples)
    import numpy as np

    from eqx_impl.train.config import ConfigError
    from eqx_impl.train.evaluate import draw_samples, save_samples
    from eqx_impl.train.rundir import load_run

    setup, state, path = load_run(args.run_dir, checkpoint=args.checkpoint, report=_note)
    model = state.model if args.raw else state.ema
    ev = setup.config.eval
    known = setup.dataset.train_labels  # present for a conditional run (checked when it was built)
    if labels is not None and known is not None and not set(labels.tolist()) <= set(np.unique(known).tolist()):
        raise ConfigError(f"--class {args.label}: {setup.dataset.name!r} has no such label.")
    print(
        f"compiling the sampler, then drawing {args.num or ev.num_samples if labels is None else len(labels)} samples "
        f"({args.sampler or ev.sampler}, {args.steps or ev.sampling_steps} steps)...",
        file=sys.stderr,
    )
    samples = draw_samples(
        setup.config,
        model,
        setup.dataset.shape,
        num=args.num if labels is None else len(labels),
        sampler=args.sampler,
        steps=args.steps,
        seed=args.seed,
        progress=not args.no_progress,
        labels=labels,
        guidance=args.guidance,
    )
    out = args.out or Path(args.run_dir) / "samples.png"
    if per_row is not None:  # --class all: one row per class
        from eqx_impl.evaluation import save_grid

        out = save_grid(samples, out, nrow=per_row, num_levels=setup.dataset.num_levels)
    else:
        out = save_samples(samples, setup.dataset, out)
    if args.npy is not None:
        args.npy.parent.mkdir(parents=True, exist_ok=True)
        np.save(args.npy, samples)
    print(f"{len(samples)} samples from {path} (step {int(state.step)}) -> {out}")
    return 0


def _cmd_evaluate(args) -> int:
    from eqx_impl.train.config import ConfigError

    bad = [o for o in args.overrides if not o.startswith("eval.")]
    if bad:
        raise ConfigError(
            f"evaluate --set only changes eval.* settings, got {bad[0]!r}; "
            "other settings are the trained run's (train again to change them)."
        )
    metrics = None
    if args.metrics:
        given = [m.strip() for m in args.metrics.split(",") if m.strip()]
        unknown = [m for m in given if canonical_name(m, METRICS) is None]
        if unknown:
            raise ConfigError(f"--metrics: unknown metric {unknown[0]!r}; known: {', '.join(METRICS)}.")
        metrics = [canonical_name(m, METRICS) or m for m in given]
    from eqx_impl.train.rundir import run_config

    if not (metrics or run_config(args.run_dir, args.overrides).eval.metrics):  # before JAX loads
        raise ConfigError("No metrics to compute: pass --metrics (e.g. bpd,fd) or set eval.metrics.")
    from eqx_impl.train.evaluate import evaluate_model
    from eqx_impl.train.files import atomic_write_text
    from eqx_impl.train.rundir import load_run

    setup, state, path = load_run(args.run_dir, checkpoint=args.checkpoint, overrides=args.overrides, report=_note)
    model = state.model if args.raw else state.ema
    print(
        f"compiling and running the evaluation ({', '.join(metrics or setup.config.eval.metrics)})...", file=sys.stderr
    )
    values = evaluate_model(
        setup.config,
        setup.dataset,
        model,
        setup.weighting,
        metrics=metrics,
        progress=not args.no_progress,
        out_dir=Path(args.run_dir),
    )
    out = args.out or Path(args.run_dir) / "evaluation.json"
    record = {"checkpoint": str(path), "step": int(state.step), "ema": not args.raw, **values}
    atomic_write_text(out, json.dumps(record, indent=2) + "\n")
    print(f"{path} (step {int(state.step)}): {_format_metrics(values)}")
    print(f"written: {out}")
    return 0


def _cmd_plot(args) -> int:
    from eqx_impl.train.rundir import run_config

    run_config(args.run_dir)  # a clear error if this is not a run directory, before JAX loads
    from eqx_impl.train import checkpoint as ckpt
    from eqx_impl.train.loop import write_plots
    from eqx_impl.train.progress import read_metrics
    from eqx_impl.train.rundir import load_run

    rows = read_metrics(Path(args.run_dir) / "metrics.jsonl")
    out_dir = args.out_dir or Path(args.run_dir)
    try:
        setup, state, _ = load_run(args.run_dir, report=_note)
    except ckpt.CheckpointError as err:
        print(f"no proposal plot: {err}", file=sys.stderr)
        from eqx_impl.train.plots import plot_loss_curve

        print(f"written: {plot_loss_curve(rows, out_dir / 'loss_curve.png')}")
        return 0
    for written in write_plots(out_dir, rows, setup, state.proposal_state):
        print(f"written: {written}")
    return 0


def _note(message: str) -> None:
    """A one-line notice (a checkpoint fallback) on stderr."""
    print(message, file=sys.stderr)


# Errors that are the user's to fix: one message, exit status 2. Looked up in sys.modules, so
# that a config error does not import the checkpoint or training modules (and JAX) to be caught.
_USER_ERRORS = {
    "eqx_impl.train.config": "ConfigError",
    "eqx_impl.train.checkpoint": "CheckpointError",
    "eqx_impl.train.preflight": "PreflightError",
    "eqx_impl.train.loop": "TrainingDiverged",
    "eqx_impl.train.fit": "TrainingDiverged",
}


def _user_errors() -> tuple[type[BaseException], ...]:
    loaded = [getattr(sys.modules[m], name, None) for m, name in _USER_ERRORS.items() if m in sys.modules]
    return (*(error for error in loaded if isinstance(error, type)), OSError)


def compilation_cache_dir() -> str | None:
    """Where the CLI keeps JAX's persistent compilation cache: `$WEIGHTED_ELBO_COMPILATION_CACHE`
    if it is a path, none if it is `0`/`off`/`false`/`no`, else `$WEIGHTED_ELBO_CACHE/jax`
    (default `~/.cache/weighted-elbo/jax`).

    **Returns:** the directory, or `None` when the cache is off.
    """
    setting = os.environ.get(COMPILATION_CACHE_ENV, "").strip()
    if setting.lower() in {"0", "off", "false", "no"}:
        return None
    if setting:
        return str(Path(setting).expanduser())
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "weighted-elbo"
    return str(base / "jax")


def prepare_jax_environment(*, verbose: bool = False) -> None:
    """Settings that JAX reads when it is imported (so this runs first; a process that has
    already imported JAX is left as it is): the persistent compilation cache
    (`compilation_cache_dir`, keeping programs that took >= 0.1 s to compile) unless
    `JAX_COMPILATION_CACHE_DIR` is set, and
    `TF_CPP_MIN_LOG_LEVEL=3` (no XLA C++ log lines) unless it is set or `verbose`.
    """
    if "jax" in sys.modules:
        return
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    cache = compilation_cache_dir()
    if cache is not None:
        os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", cache)
        # JAX's default keeps only programs that took >= 1 s to compile; the many 0.1-1 s ones
        # of a run (sampler pieces, metrics) add up: a second `sample` of a small run took
        # 8.5 s with 0.1 s against 11.6 s with 1 s (18.8-22.9 s without the cache).
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")


_COMMANDS = {"train": _cmd_train, "sample": _cmd_sample, "evaluate": _cmd_evaluate, "plot": _cmd_plot}


def main(argv: Sequence[str] | None = None) -> int:
    """Run `weighted-elbo` with `argv` (default `sys.argv[1:]`).

    **Returns:** the exit status (0 ok, 2 for configuration, checkpoint, pre-flight or
    divergence errors, printed as one message without a traceback).
    """
    args = parser().parse_args(argv)
    prepare_jax_environment(verbose=args.verbose)
    try:
        return _COMMANDS[args.command](args)
    except Exception as err:
        if not isinstance(err, _user_errors()):
            raise
        print(f"weighted-elbo {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
