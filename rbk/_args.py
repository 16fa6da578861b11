"""Option types shared by the ``rbk`` command and the experiments' own options (``add_arguments``).

Kept apart from :mod:`rbk.cli` so that :mod:`rbk.experiments` never imports the command line
(the command imports the experiments, not the reverse).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def list_of(conv, what: str):
    """An argparse type: comma-separated values, each converted by ``conv`` (``what`` names them in errors)."""
    def parse(text: str):
        out = []
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                out.append(conv(part))
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected {what}, got {part!r}") from None
        if not out:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return out

    return parse


def integer(text: str) -> int:
    """An integer, also written as ``1e4``."""
    try:
        return int(text)
    except ValueError:
        f = float(text)  # accept 1e4
        if f != int(f):
            raise ValueError(text) from None
        return int(f)


integer.__name__ = "integer"  # argparse names the type in its message: "invalid integer value: '2.5'"


def directory(text: str) -> Path:
    """A non-empty path."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a directory path, got ''")
    return Path(text)


def flat(v):
    """``[[1, 2], [3]] -> [1, 2, 3]`` (``nargs="+"`` of ``list_of`` values); ``None`` stays ``None``."""
    if v is None:
        return None
    return [x for part in v for x in part]
