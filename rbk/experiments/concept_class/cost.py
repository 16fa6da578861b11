"""Memory and FLOP estimates of a concept-class sweep: the automatic member chunking
(:func:`resolve_max_members`), the up-front refusal of what cannot fit (:func:`memory_problems`)
and the dry run's plan text (:func:`format_plan`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterable, Sequence

from rbk._checks import gib
from rbk.experiments.concept_class.learners import NET_KIND, parse_learner
from rbk.experiments.concept_class.planner import Cell, fmt_setting
from rbk.learners.kernel import kernel_cell_bytes
from rbk.sweep.cost import device_memory_bytes

if TYPE_CHECKING:  # annotations only (the study imports this module)
    from rbk.experiments.concept_class.study import SweepSpec

#: Share of a device's memory the automatic member chunking plans to use.
MEMORY_FRACTION = 0.4


def member_bytes(spec: SweepSpec, arch: str, width: int, n: int) -> int:
    """Estimated device bytes of one network member of a call (float32), conservatively.

    ``5 P`` for parameters, momentum, gradient, update and a temporary (``P`` parameters);
    the step's activations (``batch x width x 8``); the chunked evaluation (``eval_chunk x
    width x 4``: hidden layers and output of a 4096-point chunk); and a private copy of the
    member's data set (``(n + n_val + n_test) x (d + k)``), which XLA may materialise when it
    gathers a member's seed out of the stacked data.
    """
    from rbk.models import get_model, param_count

    p = param_count(get_model(arch, width, spec.d, spec.k))
    cfg = spec.train_config()
    floats = 5 * p + spec.batch_size * width * 8 + min(cfg.eval_chunk, max(n, spec.n_test)) * (width * 4 + spec.k)
    floats += (n + spec.n_val_of(n) + spec.n_test) * (spec.d + spec.k)
    return 4 * int(floats)


def resolve_max_members(spec: SweepSpec, memory_bytes: int | None = None, n_devices: int | None = None) -> int | None:
    """``spec.max_members_per_call`` or, if ``None``, what fits in :data:`MEMORY_FRACTION` of a device.

    The largest network call of the spec sets the limit: ``n_devices x floor(fraction x memory
    / member_bytes)`` (the members are sharded over the local devices).
    """
    if spec.max_members_per_call is not None:
        return spec.max_members_per_call
    nets = [parse_learner(lr)[1] for lr in spec.learners if parse_learner(lr)[0] == NET_KIND]
    if not nets:
        return None
    if memory_bytes is None or n_devices is None:
        import jax

        mem, _ = device_memory_bytes()
        memory_bytes = mem if memory_bytes is None else memory_bytes
        n_devices = jax.local_device_count() if n_devices is None else n_devices
    if memory_bytes is None:
        return None
    worst = max(member_bytes(spec, a, w, n) for a in nets for w in spec.widths for n in spec.ns)
    return max(1, int(MEMORY_FRACTION * memory_bytes) // worst) * n_devices


def cell_flops(spec: SweepSpec, cell: Cell) -> float:
    """Rough FLOPs of a cell: network training (``rbk.train.total_flops``) plus evaluation; for
    kernels the Gram entries (~60 flops each) and one Cholesky per ridge (``n^3 / 3``)."""
    n = cell.n
    if cell.kind == NET_KIND:
        from rbk import train
        from rbk.models import flops_per_example, get_model

        model = get_model(cell.arch, cell.width, spec.d, spec.k)
        cfg = spec.train_config()
        fl = train.total_flops(model, n, cfg, cell.members)
        fl += flops_per_example(model) / 3 * (n + spec.n_val_of(n) + spec.n_test) * len(cfg.record_epochs) * cell.members
        return float(fl)
    n_eval = n + spec.n_val_of(n) + spec.n_test
    if cell.kind == "rf":
        m = cell.width
        feats = 2 * n_eval * m * (spec.d + (m if cell.arch != "2nn" else 0))
        solve = len(spec.ridges) * (min(n, m) ** 3 / 3 + 2 * n * m * min(n, m))
        return float(feats + solve + 2 * n_eval * m * spec.k * len(spec.ridges))
    gram = 60.0 * n * n_eval + 2.0 * n * n_eval * spec.k * len(spec.ridges)
    from rbk import kernels

    if kernels.choose_solver(n) == "cg":  # ~30 float32 passes over K plus two float64 ones
        return float(gram + 32 * 2.0 * n * n * spec.k * len(spec.ridges))
    return float(gram + len(spec.ridges) * n**3 / 3)


def memory_problems(spec: SweepSpec, cells: Sequence[Cell], memory_bytes: int | None, n_devices: int = 1,
                    host_bytes: int | None = None) -> list[str]:
    """Why ``cells`` would not fit: one message per problem, with the estimate and the option that fixes it.

    A network call puts on each device (``memory_bytes`` each; ``None``: unchecked) the stacked
    data sets of its slots (replicated) and ``member_bytes x ceil(members / devices)``; an
    exact-kernel fit needs :func:`kernel_cell_bytes` of host RAM (``host_bytes``). Random-feature
    fits are small and not checked.
    """
    out = []

    def data_bytes(n):  # one (instance, seed) data set, float32
        return 4 * (n + spec.n_val_of(n) + spec.n_test) * (spec.d + spec.k)

    def call_bytes(c):
        per_dev = math.ceil(c.members / min(n_devices, c.members))
        return len(c.slots) * data_bytes(c.n) + per_dev * member_bytes(spec, c.arch, c.width, c.n)

    net = [c for c in cells if c.kind == NET_KIND]
    if net and memory_bytes:
        worst = max(net, key=call_bytes)
        one = data_bytes(worst.n) + member_bytes(spec, worst.arch, worst.width, worst.n)
        if one > memory_bytes:
            out.append(f"one {worst.arch} member (width {worst.width}, N = {worst.n}, plus {spec.n_val_of(worst.n)} "
                       f"validation and {spec.n_test} test points) needs about {gib(one)} but a device has "
                       f"{gib(memory_bytes)}: use a smaller --n, --width or --n-test (or --device-memory-gb if the "
                       "detected memory is wrong)")
        elif call_bytes(worst) > memory_bytes:
            fit = max(1, memory_bytes // one) * n_devices
            out.append(f"a call of {worst.members} {worst.arch} members (width {worst.width}, N = {worst.n}) needs "
                       f"about {gib(call_bytes(worst))} per device but a device has {gib(memory_bytes)}: use "
                       f"--max-members-per-call {fit} or less (or leave it out: chosen to fit)")
    exact = [c.n for c in cells if c.kind in ("ntk", "nngp")]
    if exact and host_bytes and kernel_cell_bytes(max(exact)) > host_bytes:
        ok = [n for n in spec.ns if kernel_cell_bytes(n) <= host_bytes]
        fix = (f"use --kernel-max-n {max(ok)} (exact kernels only up to that N)" if ok
               else "leave the exact kernels (ntk-*, nngp-*) out of --learners")
        out.append(f"the exact kernel fit at N = {max(exact)} needs about {gib(kernel_cell_bytes(max(exact)))} of "
                   f"host RAM (float64 Gram matrices) but this machine has {gib(host_bytes)}: {fix}")
    return out


def format_plan(spec: SweepSpec, cells: Sequence[Cell], *, memory_bytes: int | None = None,
                memory_source: str = "", n_devices: int = 1, done: Iterable[str] = ()) -> str:
    """Human-readable plan: cells, compiled calls, members, memory and FLOP estimates."""
    done = set(done)
    net = [c for c in cells if c.kind == NET_KIND]
    ker = [c for c in cells if c.kind != NET_KIND]
    lines = [
        f"experiment {spec.experiment}: d={spec.d}, k={spec.k}, g_degree={spec.g_degree}, "
        f"(alpha, beta) in {[tuple(p) for p in spec.instances]}",
        f"learners: {', '.join(spec.learners)}",
        f"N: {', '.join(map(str, spec.ns))}; seeds: {len(spec.seeds)} ({', '.join(map(str, spec.seeds))})",
        f"networks: width {', '.join(map(str, spec.widths))}, {spec.epochs} epochs (lr/10 at "
        f"{spec.config()['decay_epoch']}), batch {spec.batch_size}, lr x wd = {len(spec.lrs)} x {len(spec.wds)} "
        f"settings (lr {', '.join(map(fmt_setting, spec.lrs))}; wd {', '.join(map(fmt_setting, spec.wds))})",
        f"kernels: relative ridges {', '.join(map(fmt_setting, spec.ridges))}"
        + (f"; exact kernels only up to N = {spec.kernel_max_n}" if spec.kernel_max_n else ""),
        f"config hash {spec.config_hash()}",
        "",
        f"cells: {len(cells)} ({len(net)} compiled network calls, {len(ker)} kernel / random-feature fits)"
        + (f"; {len(done & {c.id for c in cells})} already finished" if done else ""),
    ]
    if net:
        shapes = {(c.arch, c.width, c.n, c.members) for c in net}
        lines.append(
            f"network calls: {len(shapes)} distinct compiled shapes; members per call "
            f"{min(c.members for c in net)}..{max(c.members for c in net)}; "
            f"max members per call: {spec.max_members_per_call or 'no limit'}"
        )
        worst = max(net, key=lambda c: member_bytes(spec, c.arch, c.width, c.n) * c.members)
        mb = member_bytes(spec, worst.arch, worst.width, worst.n)
        per_dev = mb * math.ceil(worst.members / n_devices)
        mem_txt = f"{memory_bytes / 2**30:.1f} GiB per device ({memory_source})" if memory_bytes else "unknown"
        lines.append(
            f"memory estimate: {mb / 2**20:.1f} MiB per member ({worst.arch}, width {worst.width}, N={worst.n}); "
            f"largest call {worst.members} members = {per_dev / 2**30:.2f} GiB on each of {n_devices} device(s); "
            f"device memory {mem_txt}"
        )
    if ker:
        nmax = max(c.n for c in ker if c.kind != "rf") if any(c.kind != "rf" for c in ker) else None
        if nmax:
            lines.append(f"kernel fits: largest N = {nmax} needs ~{kernel_cell_bytes(nmax) / 2**30:.1f} GiB host RAM (float64)")
    fl_net = sum(cell_flops(spec, c) for c in net)
    fl_ker = sum(cell_flops(spec, c) for c in ker)
    lines.append(f"FLOPs: networks {fl_net:.3g} (training + evaluation), kernels {fl_ker:.3g}, total {fl_net + fl_ker:.3g}")
    for tf in (1e11, 1e13):
        lines.append(f"  at {tf:.0e} FLOP/s sustained: {(fl_net + fl_ker) / tf / 3600:.3g} h")
    lines.append("")
    if len(cells) <= 40:
        lines.append("cells (id: members, estimated FLOPs):")
        for c in cells:
            mark = "  [done]" if c.id in done else ""
            lines.append(f"  {c.id}: {c.members} member(s), {cell_flops(spec, c):.3g} FLOPs{mark}")
    else:
        lines.append("cells per (learner, N): count, members, estimated FLOPs:")
        groups: dict[tuple, list[Cell]] = {}
        for c in cells:
            groups.setdefault((c.learner, c.n), []).append(c)
        for (learner, n), cs in groups.items():
            nd = sum(c.id in done for c in cs)
            mark = f"  [{nd} done]" if nd else ""
            lines.append(f"  {learner:>13s} N={n:<6d} {len(cs):3d} cell(s), {sum(c.members for c in cs):5d} member(s), "
                         f"{sum(cell_flops(spec, c) for c in cs):.3g} FLOPs{mark}")
    return "\n".join(lines)
