"""The ``rbk`` command: one subcommand per experiment of the registry :mod:`rbk.experiments`
(``rbk <experiment> --profile quick --out DIR``; ``--dry-run`` prints the plan, calls, memory and
FLOPs), and ``rbk plot --out DIR`` (summary and figures again).

A profile sets every value; any option given overrides it. Lists take spaces or commas
(``--n 1000 3000`` or ``--n 1000,3000``). Every value is checked before anything is
computed; a bad one exits with status 2 and a message naming the option and its range.
Results land in ``--out`` (see :mod:`rbk.sweep`); a re-run of the same command resumes,
another config in the same directory is refused, except a superset that only adds values to
``--n`` or ``--seeds`` (it extends the sweep: finished cells are kept, only the new ones run).
Without ``--out`` a profile's own config goes to ``results/<experiment>-<profile>`` and any other
config to ``results/<experiment>-<profile>-<hash8>`` (the first 8 digits of its config hash), so a
custom run never takes the profile's directory. A run that cannot fit in memory is refused up
front with the estimate and the option that fixes it; Ctrl-C stops with status 130 and a re-run
resumes. Progress goes to stderr; the summary table (learner x N: mean test error and 95% CI, with
the threshold) to stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


from rbk._args import directory as _dir
from rbk._args import integer as _int


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr (``rbk <experiment>: error: ... (rbk
    <experiment> --help lists the options)``), status 2: a usage block of thirty options would bury it."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (rbk {self.prog.split()[-1]} --help lists the options)\n"
                  if self.prog != "rbk" else f"rbk: error: {message} (rbk --help lists the commands)\n")


def _add_common_arguments(p: argparse.ArgumentParser, experiment: str) -> None:
    """The options of every experiment: what to run, where, and the machine."""
    from rbk.experiments import module

    mod = module(experiment)
    g = p.add_argument_group("what to run")
    g.add_argument("--profile", default="quick", choices=sorted(mod.PROFILES),
                   help="preset of every value below (default: quick)")
    g.add_argument("--out", type=_dir, default=None,
                   help=f"results directory (default: results/{experiment}-<profile>, or "
                        f"results/{experiment}-<profile>-<hash8> when options change the profile's config); "
                        "re-running resumes")
    g.add_argument("--dry-run", action="store_true",
                   help="print the plan (cells, compiled calls, memory and FLOP estimates, the wall time "
                        "estimated at this machine's measured rates) and exit; exit status 2 if it cannot fit")
    g.add_argument("--quiet", action="store_true", help="no progress bar or per-cell lines on stderr")
    g.add_argument("--no-plot", action="store_true", help="skip the figure at the end (summary.json is written)")
    g.add_argument("--epoch-progress", action="store_true",
                   help="a second progress bar inside each network call, per member-epoch (costs ~2 ms each)")
    g.add_argument("--seeds", type=_int, help="number of seeds (0, 1, ..., seeds-1), >= 1")
    r = p.add_argument_group("resources")
    r.add_argument("--device-memory-gb", type=float,
                   help="device memory to plan the chunking for (default: detected)")
    r.add_argument("--cpu-devices", type=_int,
                   help="on a CPU: split it into this many JAX devices, >= 1, so the (seed, lr, wd) members of a "
                        "call train side by side (default: one per core; 1: one device, each member on every core; "
                        "ignored when XLA_FLAGS or JAX_NUM_CPU_DEVICES already set a count)")
    r.add_argument("--matmul-precision", metavar="{highest,high,default}",
                   help="float32 matrix-product precision of the network training: highest (alias float32; the "
                        "default: full float32 on every platform), high (tensorfloat32) or default (bfloat16): TF32 "
                        "on NVIDIA GPUs, bfloat16 passes on TPUs, no change on a CPU (docs/devices.md)")
    mod.add_arguments(p)
    if hasattr(mod, "add_resource_arguments"):
        mod.add_resource_arguments(r)


def _epilog() -> str:
    """Example commands, one per registered experiment, and ``rbk plot``."""
    from rbk.experiments import EXPERIMENTS, module

    lines = []
    for name in EXPERIMENTS:
        what = (module(name).__doc__ or name).strip().splitlines()[0]
        lines.append(f"  rbk {name} --profile quick --out results/{name}-quick".ljust(58) + f"# {what}")
    first = next(iter(EXPERIMENTS))
    lines.append(f"  rbk {first} --profile paper --dry-run".ljust(58) + "# the plan, calls, memory, FLOPs")
    lines.append(f"  rbk plot --out results/{first}-quick".ljust(58) + "# summary + figures again")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rbk",
        description="ResNet beyond kernels: what networks learn with fewer samples than kernels.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_epilog(),
    )
    from rbk.experiments import EXPERIMENTS, module

    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join([*EXPERIMENTS, "plot"]) + "}",
                                parser_class=_Parser)
    sub.required = True
    for name in EXPERIMENTS:
        doc = (module(name).__doc__ or name).strip().splitlines()
        px = sub.add_parser(name, help=doc[0], description=doc[0])
        _add_common_arguments(px, name)
    p3 = sub.add_parser("plot", help="summary.json, the figure and the table of a results directory",
                        description="Re-summarise and re-plot a results directory (any finished cells).")
    p3.add_argument("--out", type=_dir, required=True, help="results directory (holding meta.json)")
    p3.add_argument("--no-plot", action="store_true", help="only summary.json and the table")
    p3.add_argument("--allow-incomplete", action="store_true",
                    help="summarise the readable cells even if some cell files are corrupt (listed on stderr)")
    return parser


def spec_from_args(args: argparse.Namespace, experiment: str):
    """The validated spec of the parsed options (``ValueError`` on a bad value)."""
    from rbk.experiments import module, profile_spec

    seeds = None
    if args.seeds is not None:
        if args.seeds < 1:
            raise ValueError(f"--seeds (number of seeds) must be an integer >= 1, got {args.seeds}")
        seeds = tuple(range(args.seeds))
    if args.device_memory_gb is not None and not args.device_memory_gb > 0:
        raise ValueError(f"--device-memory-gb must be > 0, got {args.device_memory_gb}")
    if args.cpu_devices is not None and args.cpu_devices < 1:
        raise ValueError(f"--cpu-devices (JAX devices the CPU is split into) must be an integer >= 1, got {args.cpu_devices}")
    mod = module(experiment)
    return profile_spec(experiment, args.profile, seeds=seeds, **mod.overrides(args))


def default_out(spec, experiment: str, profile: str) -> Path:
    """``results/<exp>-<profile>`` for the profile's own config, else ``results/<exp>-<profile>-<hash8>``."""
    from rbk.experiments import profile_spec

    base = f"{experiment}-{profile}"
    if spec.config_hash() != profile_spec(experiment, profile).config_hash():
        base += f"-{spec.config_hash()[:8]}"
    return Path("results") / base


def _run_experiment(parser, args, experiment: str, argv) -> int:
    from rbk import experiments
    from rbk import sweep

    try:
        spec = spec_from_args(args, experiment)
    except ValueError as e:
        parser.error(str(e))
    from rbk import train

    # process-wide JAX configuration belongs to the entry point: before any JAX computation
    train.configure_cpu_devices(args.cpu_devices)
    out = args.out or default_out(spec, experiment, args.profile)
    mem = None if args.device_memory_gb is None else int(args.device_memory_gb * 2**30)
    try:
        sweep.check_out_dir(out)
        if args.dry_run:
            return _dry_run(spec, out, mem)
    except sweep.SweepInputError as e:
        print(f"rbk {experiment}: error: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        res = sweep.run(spec, out, quiet=args.quiet, argv=["rbk", *argv], memory_bytes=mem,
                        epoch_progress=args.epoch_progress)
    except (sweep.SweepInputError, sweep.StoreLockedError) as e:
        print(f"rbk {experiment}: error: {e}", file=sys.stderr)
        return 2
    if not res.is_writer:
        return 0
    summary = experiments.finalize(out, plot=not args.no_plot, quiet=args.quiet)
    wall = time.perf_counter() - t0
    print()
    if summary is not None:
        print(experiments.format_table(experiment, summary))
        print()
    made = ["meta.json", "results.csv", "results.jsonl"]
    if summary is not None:
        made += ["summary.json"] + ([] if args.no_plot else sorted(p.name for p in Path(out).glob("*.p[nd][gf]")))
    print(f"{len(res.ran)} cells run, {len(res.skipped)} resumed, {len(res.rows)} rows; wall {wall:.1f} s")
    print(f"results in {out}/: {', '.join(made)}")
    return 0


def _dry_run(spec, out: Path, mem: int | None) -> int:
    """Print the plan (nothing computed or written); say when it will not fit in memory."""
    import jax

    from rbk import sweep
    from rbk.experiments import module

    dev_mem, source = (mem, "--device-memory-gb") if mem else sweep.device_memory_bytes()
    nd = jax.local_device_count()
    host = sweep.driver.host_memory_bytes()
    mod = module(spec.experiment)
    if hasattr(mod, "dry_run"):  # the experiment's own dry run (chunking, extensions, estimates)
        return mod.dry_run(spec, Path(out), dev_mem, source, nd, host)
    meta = sweep.load_meta_file(Path(out) / "meta.json")
    if meta is not None:
        try:
            sweep.Store(out, spec, []).check_config(meta)
        except sweep.ConfigMismatchError as e:
            print(f"note: running this config there would be refused: {e}", file=sys.stderr)
            meta = None
    spec, _, _ = spec.resolve(meta, dev_mem)
    cells = spec.plan()
    done = sweep.Store(out, spec, cells).done() if meta is not None else set()
    print(f"dry run: nothing is computed. Results would go to {out}")
    print(spec.format_plan(cells, done=done))
    todo = [c for c in cells if c.id not in done]
    estimate = sweep.cost.format_estimate(spec, todo)
    if estimate:
        print(estimate)
    return sweep.cost.refuse_in_dry_run(spec.experiment, spec.memory_problems(todo, dev_mem, nd, host))


def _plot(parser, args) -> int:
    from rbk import experiments
    from rbk import sweep

    if not (args.out / "meta.json").exists():
        parser.error(f"--out {args.out} is not an rbk results directory (no meta.json)")
    try:
        meta = sweep.read_meta(args.out)
        spec = sweep.spec_from_meta(meta)
        store = sweep.Store(args.out, spec, spec.plan())
        bad = [(store.cell_path(c.id), why) for c in store.cells if (why := store.cell_problem(c.id))]
        for path, why in bad:  # every cell that could not be read, before anything is rewritten
            print(f"rbk plot: cell {path} {why}", file=sys.stderr)
        if bad and not args.allow_incomplete:
            print(f"rbk plot: error: {len(bad)} of {len(store.cells)} cells could not be read (listed above); "
                  "nothing was rewritten: rerun the experiment's command to recompute them, or pass "
                  "--allow-incomplete to summarise the others", file=sys.stderr)
            return 1
        summary = experiments.finalize(args.out, plot=not args.no_plot)
    except sweep.SweepInputError as e:
        print(f"rbk plot: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. the directory is not writable: one line, no traceback
        print(f"rbk plot: error: cannot write the summary or figures in {args.out}: "
              f"{getattr(e, 'strerror', None) or e} ({getattr(e, 'filename', None) or args.out})", file=sys.stderr)
        return 1
    if summary is None:
        return 1
    print(experiments.format_table(meta["config"]["experiment"], summary))
    return 0


def main(argv=None) -> int:
    """Entry point of the ``rbk`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command != "plot":
            sub = parser._subparsers._group_actions[0].choices[args.command]  # for errors naming the subcommand
            return _run_experiment(sub, args, args.command, argv)
        return _plot(parser, args)
    except KeyboardInterrupt:
        # finished cells are on disk (each written atomically); nothing half-written counts
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
