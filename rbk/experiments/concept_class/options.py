"""The command-line options of the concept-class sweeps (``add_arguments``, ``overrides``; the
engine's command adds ``--profile``, ``--out``, ``--seeds`` and the machine's options) and their
dry run (:func:`dry_run`: the plan with the member chunking, memory and FLOP estimates)."""

from __future__ import annotations

import sys
from pathlib import Path

from rbk._args import flat, integer, list_of
from rbk.experiments.concept_class.learners import LEARNERS


def add_arguments(p, experiment: str) -> None:
    """The target and grid options of ``experiment`` (exp1: one alpha and beta; exp2: lists)."""
    t = p.add_argument_group("target: beta*F(x) + alpha*G(F(x)) on the Boolean cube {-1,1}^d")
    t.add_argument("--d", type=integer, help="input dimension, an even integer >= 2 (paper: 30)")
    t.add_argument("--k", type=integer, help="outputs = degree-2 parities of F, 1 <= k <= d/2 (paper: 15)")
    t.add_argument("--g-degree", type=integer, help="degree of the parity G, 1 <= g <= k (paper: 4)")
    if experiment == "exp1":
        t.add_argument("--alpha", type=float, help="weight of G(F), in (0, 1) (paper: 0.3; threshold k*alpha^2)")
        t.add_argument("--beta", type=float, help="weight of F, > 0 (default 1)")
    else:
        t.add_argument("--alpha", type=list_of(float, "numbers in (0, 1)"), nargs="+",
                       help="list of alpha values, each in (0, 1)")
        t.add_argument("--beta", type=list_of(float, "numbers > 0"), nargs="+", help="list of beta values, each > 0")

    s = p.add_argument_group("grid")
    s.add_argument("--learners", type=list_of(str, "learner names"), nargs="+",
                   help=f"learners among {', '.join(LEARNERS)}")
    s.add_argument("--n", type=list_of(integer, "integers >= 50"), nargs="+",
                   help="training-set sizes, each >= the batch size 50")
    s.add_argument("--width", type=list_of(integer, "integers >= 1"), nargs="+", help="network width(s)")
    s.add_argument("--epochs", type=integer, help="training epochs (lr/10 at the profile's fraction of them, unless --decay-epoch)")
    s.add_argument("--decay-epoch", type=integer, help="epoch of the lr/10 step, in [0, epochs]")
    s.add_argument("--lr", type=list_of(float, "numbers > 0"), nargs="+", help="learning rates, each > 0")
    s.add_argument("--wd", type=list_of(float, "numbers >= 0"), nargs="+", help="weight decays, each >= 0")
    s.add_argument("--ridges", type=list_of(float, "numbers >= 0"), nargs="+",
                   help="kernel ridges relative to mean(diag K), 1 to 5 values >= 0 (chosen on validation)")
    s.add_argument("--n-val", type=integer, help="validation points (default max(1000, N/5))")
    s.add_argument("--n-test", type=integer, help="test points (default 10000)")
    s.add_argument("--kernel-max-n", type=integer, help="run exact kernels only for N up to this")


def add_resource_arguments(r) -> None:
    """The chunking option, in the command's "resources" group ``r``."""
    r.add_argument("--max-members-per-call", type=integer,
                   help="split a network call into chunks of at most this many (seed, lr, wd) members "
                        "(default: what fits in 40%% of the device's memory, by the estimate of --dry-run)")


def overrides(args, experiment: str) -> dict:
    """``make_spec`` keywords of the parsed options (``None``: not given; ``--seeds`` is the command's)."""
    alphas, betas = args.alpha, args.beta
    if experiment == "exp2":
        alphas, betas = flat(alphas), flat(betas)
    return dict(
        learners=flat(args.learners), ns=flat(args.n), alphas=alphas, betas=betas, d=args.d,
        k=args.k, g_degree=args.g_degree, widths=flat(args.width), epochs=args.epochs,
        decay_epoch=args.decay_epoch, lrs=flat(args.lr), wds=flat(args.wd), ridges=flat(args.ridges),
        n_val=args.n_val, n_test=args.n_test, kernel_max_n=args.kernel_max_n,
        max_members_per_call=args.max_members_per_call, matmul_precision=args.matmul_precision,
    )  # fmt: skip


def dry_run(spec, out: Path, dev_mem: int | None, source: str, nd: int, host_bytes: int | None) -> int:
    """Print the plan of ``spec`` run into ``out`` (nothing computed or written): its chunking for
    ``dev_mem`` bytes per device (``source``: where that number comes from) on ``nd`` devices, the
    cells already finished there (or the extension of that sweep) and what will not fit (the exact
    kernels in ``host_bytes`` of host memory)."""
    import dataclasses

    from rbk import sweep
    from rbk.experiments.concept_class.cost import format_plan, memory_problems, resolve_max_members
    from rbk.experiments.concept_class.planner import plan
    from rbk.experiments.concept_class.study import extension_parts

    mm = resolve_max_members(spec, dev_mem, nd)
    spec = dataclasses.replace(spec, max_members_per_call=mm)
    done = set()
    meta = sweep.load_meta_file(Path(out) / "meta.json")
    if meta is not None:
        same = meta.get("config_hash") == spec.config_hash()
        extend = None if same else extension_parts(meta, spec)
        if same or extend is not None:
            spec = dataclasses.replace(spec, parts=sweep.spec_from_meta(meta).parts if same else extend,
                                       max_members_per_call=meta.get("resolved", {}).get("max_members_per_call", mm))
            done = sweep.Store(out, spec, plan(spec)).done()
            if extend is not None:
                print(f"note: this extends the sweep in {out} (extra --n or --seeds values); its finished cells "
                      "are kept", file=sys.stderr)
        else:
            try:
                sweep.Store(out, spec, []).check_config(meta)
            except sweep.ConfigMismatchError as e:
                print(f"note: running this config there would be refused: {e}", file=sys.stderr)
    cells = plan(spec)
    print(f"dry run: nothing is computed. Results would go to {out}")
    print(format_plan(spec, cells, memory_bytes=dev_mem, memory_source=source, n_devices=nd, done=done))
    todo = [c for c in cells if c.id not in done]
    for msg in memory_problems(spec, todo, dev_mem, nd, host_bytes):
        print(f"WILL NOT FIT: {msg}")
    return 0


def format_table(summary) -> str:
    """The printed table of a summary (:func:`rbk.experiments.concept_class.figures.format_table`;
    matplotlib is imported on use)."""
    from rbk.experiments.concept_class import figures

    return figures.format_table(summary)


def bind(experiment: str) -> tuple:
    """``(make_spec, add_arguments, overrides, plot)`` of ``experiment`` (the registry's interface):
    its validated :class:`~rbk.experiments.concept_class.SweepSpec` from ``make_spec`` keywords, its
    options and the keywords of the parsed ones, its figure ``<experiment>.png/.pdf``."""
    from functools import partial

    from rbk.experiments.concept_class import study

    def plot(summary, out_dir):
        from rbk.experiments.concept_class import figures

        return getattr(figures, f"plot_{experiment}")(summary, out_dir, name=experiment)

    return (partial(study.make_spec, experiment), partial(add_arguments, experiment=experiment),
            partial(overrides, experiment=experiment), plot)  # fmt: skip
