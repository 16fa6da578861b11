"""The command-line options of the concept-class sweeps (``add_arguments``, ``overrides``: those of
:class:`~rbk.experiments.concept_class.study.SweepSpec`'s fields with a flag and :data:`WEIGHTS`; the
engine's command adds ``--profile``, ``--out``, ``--seeds`` and the machine's options) and their
dry run (:func:`dry_run`: the plan with the member chunking, memory and FLOP estimates)."""

from __future__ import annotations

import sys
from pathlib import Path

from rbk._args import Option, add_options, option_values, options_of
from rbk.experiments.concept_class.study import SweepSpec


#: The options of the target's weights, per experiment (exp1: one alpha and beta; exp2: lists);
#: :func:`rbk.experiments.concept_class.study.make_spec` checks them.
WEIGHTS = {
    "exp1": (Option("alphas", "--alpha", "weight of G(F), in (0, 1) (paper: 0.3; threshold k*alpha^2)", float),
             Option("betas", "--beta", "weight of F, > 0 (default 1)", float)),
    "exp2": (Option("alphas", "--alpha", "list of alpha values, each in (0, 1)", float, many=True,
                    what="numbers in (0, 1)"),
             Option("betas", "--beta", "list of beta values, each > 0", float, many=True, what="numbers > 0")),
}
_TARGET = ("d", "k", "g_degree")
_COMMAND = ("seeds", "matmul_precision", "max_members_per_call")  # the command's own, or in its resources group
_FIELDS = options_of(SweepSpec)


def add_arguments(p, experiment: str) -> None:
    """The target and grid options of ``experiment`` (:class:`SweepSpec`'s fields with a flag and
    :data:`WEIGHTS`)."""
    add_options(p.add_argument_group("target: beta*F(x) + alpha*G(F(x)) on the Boolean cube {-1,1}^d"),
                [o for o in _FIELDS if o.field in _TARGET] + list(WEIGHTS[experiment]))
    add_options(p.add_argument_group("grid"), [o for o in _FIELDS if o.field not in _TARGET + _COMMAND])


def add_resource_arguments(r) -> None:
    """The chunking option, in the command's "resources" group ``r``."""
    add_options(r, [o for o in _FIELDS if o.field == "max_members_per_call"])


def overrides(args, experiment: str) -> dict:
    """``make_spec`` keywords of the parsed options (``None``: not given; ``--seeds`` is the command's)."""
    own = [o for o in _FIELDS if o.field not in ("seeds", "matmul_precision")] + list(WEIGHTS[experiment])
    return dict(option_values(args, own), matmul_precision=args.matmul_precision)


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
    print(sweep.cost.format_estimate(spec, todo))
    return sweep.cost.refuse_in_dry_run(spec.experiment, memory_problems(spec, todo, dev_mem, nd, host_bytes))


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
