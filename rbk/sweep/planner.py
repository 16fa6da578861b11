"""The planner interface: what the engine needs of a study's cells (:class:`PlannedCell`) and the
check every plan passes (:func:`check_plan`).

A study plans its own cells (``Study.plan()``, in run order); the engine only reads a cell's
``id`` (a file name under ``cells/``), ``learner`` and ``kind``, and splits the plan over the
processes of a multi-process run by position.
"""

from __future__ import annotations

from typing import Protocol, Sequence


class PlannedCell(Protocol):
    """A cell of a plan: ``id`` unique within the plan and usable as a file name."""

    id: str
    learner: str
    kind: str


def check_plan(cells: Sequence[PlannedCell]) -> list:
    """``cells`` as a list, after checking that their ids are unique, non-empty file names."""
    cells = list(cells)
    ids = [c.id for c in cells]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"a study's plan must give every cell its own id, got {dup[:5]} more than once")
    bad = [i for i in ids if not isinstance(i, str) or not i or "/" in i or i.startswith(".")]
    if bad:
        raise ValueError(f"cell ids must be non-empty file names (no '/', not starting with '.'), got {bad[:5]}")
    return cells
