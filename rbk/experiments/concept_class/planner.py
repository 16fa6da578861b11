"""The plan of a concept-class sweep: its cells (:class:`Cell`, one compiled call each) in run order,
network calls split into chunks of at most ``max_members_per_call`` members."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Sequence

import numpy as np

from rbk.experiments.concept_class.learners import NET_KIND, parse_learner

if TYPE_CHECKING:  # annotations only (the study imports this module)
    from rbk.experiments.concept_class.study import SweepSpec


@dataclasses.dataclass(frozen=True)
class Cell:
    """One call: a network training call, or one kernel / random-feature fit.

    ``slots`` are the ``(alpha, beta, seed)`` data sets of the call (networks: all of them
    ride on the trainer's data axis; kernels: exactly one); ``lrs``/``wds`` the network
    settings of the call (the full product is trained).
    """

    id: str
    learner: str
    kind: str
    arch: str
    n: int
    width: int | None
    slots: tuple[tuple[float, float, int], ...]
    lrs: tuple[float, ...] = ()
    wds: tuple[float, ...] = ()

    @property
    def members(self) -> int:
        return len(self.slots) * max(1, len(self.lrs)) * max(1, len(self.wds))


def fmt_setting(v: float) -> str:
    """A setting as cell ids and the plan text write it (``0.02``, ``1e-05``)."""
    return f"{v:g}"


def _chunks(seq: Sequence, size: int) -> list[tuple]:
    """``seq`` split into ``ceil(len / size)`` near-equal consecutive groups (fewer distinct shapes)."""
    parts = math.ceil(len(seq) / size)
    bounds = np.linspace(0, len(seq), parts + 1).round().astype(int)
    return [tuple(seq[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def _split_members(slots, lrs, wds, max_members: int | None):
    """Groups ``(slots, lrs, wds)`` each with at most ``max_members`` members (slots split first)."""
    if max_members is None or len(slots) * len(lrs) * len(wds) <= max_members:
        return [(tuple(slots), tuple(lrs), tuple(wds))]
    lw = len(lrs) * len(wds)
    if lw <= max_members:
        return [(s, tuple(lrs), tuple(wds)) for s in _chunks(slots, max_members // lw)]
    if len(wds) <= max_members:
        return [((s,), lg, tuple(wds)) for s in slots for lg in _chunks(lrs, max_members // len(wds))]
    return [((s,), (lr,), wg) for s in slots for lr in lrs for wg in _chunks(wds, max_members)]


def plan(spec: SweepSpec, max_members_per_call: int | None = None) -> list[Cell]:
    """The cells of a sweep, in run order: by N, then learner (networks first), then the rest.

    ``max_members_per_call`` (default ``spec.max_members_per_call``; ``None``: no chunking)
    splits a network call's members.
    """
    mm = spec.max_members_per_call if max_members_per_call is None else max_members_per_call
    if spec.parts:  # an extended sweep: the original cells keep their ids, each extension's network calls are tagged
        cells = []
        for ns, seeds, tag in spec.parts:
            sub = dataclasses.replace(spec, ns=tuple(ns), seeds=tuple(seeds), parts=())
            cells += [dataclasses.replace(c, id=c.id + tag) if c.kind == NET_KIND else c for c in plan(sub, mm)]
        assert len({c.id for c in cells}) == len(cells), "cell ids must be unique"
        return cells
    exp2 = spec.experiment == "exp2"
    cells: list[Cell] = []
    for n in spec.ns:
        for learner in spec.learners:
            kind, arch = parse_learner(learner)
            if kind != NET_KIND:
                continue
            slots = [(a, b, s) for (a, b) in spec.instances for s in spec.seeds]
            for width in spec.widths:
                base = f"{learner}_n{n}_w{width}"
                if not exp2:
                    a, b = spec.instances[0]
                    base += f"_a{fmt_setting(a)}_b{fmt_setting(b)}"
                groups = _split_members(slots, spec.lrs, spec.wds, mm)
                for j, (sl, lg, wg) in enumerate(groups):
                    cid = base if len(groups) == 1 else f"{base}_part{j + 1}of{len(groups)}"
                    cells.append(Cell(cid, learner, kind, arch, n, width, sl, lg, wg))
        for learner in spec.learners:
            kind, arch = parse_learner(learner)
            if kind == NET_KIND or (spec.kernel_max_n is not None and n > spec.kernel_max_n and kind != "rf"):
                continue
            widths = spec.widths if kind == "rf" else (None,)
            for width in widths:
                for a, b in spec.instances:
                    for s in spec.seeds:
                        cid = f"{learner}_n{n}" + (f"_w{width}" if width else "") + f"_a{fmt_setting(a)}_b{fmt_setting(b)}_s{s}"
                        cells.append(Cell(cid, learner, kind, arch, n, width, ((a, b, s),)))
    ids = [c.id for c in cells]
    assert len(set(ids)) == len(ids), "cell ids must be unique"
    return cells
