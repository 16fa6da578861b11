"""The learner names of the concept-class sweeps (Experiments 1 and 2).

A network learner is an architecture of :mod:`rbk.models` (``2nn``, ``3nn``, ``3resnet``); a
kernel learner is ``<kind>-<arch>`` with ``kind`` one of :data:`KERNEL_KINDS` (``ntk``, ``nngp``:
the exact infinite-width kernels, ``rf``: random features of the drawn network). Each kind is a
learner of :data:`rbk.learners.LEARNERS` (:data:`SHARED`, :func:`learner`): its runner and grid
are written there once.
"""

from __future__ import annotations

from rbk import learners as shared_learners
from rbk.models import ARCHS

NET_KIND = "net"
KERNEL_KINDS = ("ntk", "nngp", "rf")
LEARNERS = ARCHS + tuple(f"{kind}-{arch}" for kind in KERNEL_KINDS for arch in ARCHS)
#: The :data:`rbk.learners.LEARNERS` entry behind each kind of learner of these sweeps.
SHARED = {NET_KIND: "sgd", "ntk": "ntk", "nngp": "nngp", "rf": "rf"}


def parse_learner(name: str) -> tuple[str, str]:
    """``'3resnet' -> ('net', '3resnet')``, ``'ntk-2nn' -> ('ntk', '2nn')``."""
    if not isinstance(name, str) or name not in LEARNERS:
        raise ValueError(f"learners (--learners) must be among {list(LEARNERS)}, got {name!r}")
    if "-" in name:
        kind, arch = name.split("-", 1)
        return kind, arch
    return NET_KIND, name


def learner(name: str) -> shared_learners.Learner:
    """The :class:`rbk.learners.Learner` that runs the sweeps' learner ``name`` (``'ntk-2nn' -> LEARNERS['ntk']``)."""
    return shared_learners.get(SHARED[parse_learner(name)[0]])
