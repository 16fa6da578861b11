"""Option types shared by the ``rbk`` command and the experiments' own options (``add_arguments``).

Kept apart from :mod:`rbk.cli` so that :mod:`rbk.experiments` never imports the command line
(the command imports the experiments, not the reverse).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Callable


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


@dataclasses.dataclass(frozen=True)
class Option:
    """A study's option, declared once: the config ``field`` it sets, its ``check`` (``(name,
    value) -> value``, raising ``ValueError`` naming ``name``), and, for the command line, its
    ``flag`` and ``help``, the conversion ``conv`` of a value and, for ``many``, a list (spaces or
    commas; ``what`` names the values in errors) or ``choices``. :func:`option` declares one as a
    dataclass field; :func:`add_options` makes the command-line options of a declaration,
    :func:`option_values` reads the parsed ones back as keywords, :func:`validate` checks values.
    ``aliases``: earlier spellings of the flag, still accepted (hidden from ``--help``) with a
    deprecation line on stderr, for one release."""

    field: str
    flag: str | None = None
    help: str = ""
    conv: Callable = str
    many: bool = False
    what: str = "values"
    choices: tuple | None = None
    check: Callable | None = None
    aliases: tuple = ()

    @property
    def name(self) -> str:
        """How messages name the option: the field and, when it has one, the flag (``ns (--n)``)."""
        return self.field if self.flag is None else f"{self.field} ({self.flag})"


def option(default, *, check: Callable | None = None, flag: str | None = None, help: str = "", conv: Callable = str,
           many: bool = False, what: str = "values", choices: tuple | None = None, aliases: tuple = ()):
    """A config field declared once (a :func:`dataclasses.field` whose metadata holds its
    :class:`Option`): its default, its ``check`` and, with a ``flag``, its command-line option
    (``aliases``: its deprecated earlier spellings)."""
    return dataclasses.field(default=default, metadata={"option": Option("", flag, help, conv, many, what, choices,
                                                                         check, tuple(aliases))})


def options_of(cls, *, cli: bool = True) -> tuple[Option, ...]:
    """The :class:`Option` of every field of the dataclass ``cls`` declared by :func:`option`
    (``cli``: only those with a flag), in field order."""
    out = []
    for f in dataclasses.fields(cls):
        o = f.metadata.get("option")
        if o is not None and (o.flag is not None or not cli):
            out.append(dataclasses.replace(o, field=f.name))
    return tuple(out)


def validate(cls, kw: dict, *, what: str, skip: tuple = ("experiment",)) -> dict:
    """Every field of ``cls`` (but ``skip``): its default or ``kw``'s value, checked by its option's
    ``check`` (``ValueError`` naming the option, before any compute). An unknown keyword is refused."""
    fields = [f for f in dataclasses.fields(cls) if f.name not in skip]
    known = {f.name for f in fields}
    bad = sorted(set(kw) - known)
    if bad:
        raise ValueError(f"unknown option(s) {bad}; {what} takes {sorted(known)}")
    checks = {o.field: o for o in options_of(cls, cli=False)}
    out = {}
    for f in fields:
        v = kw[f.name] if f.name in kw else f.default
        o = checks.get(f.name)
        out[f.name] = v if o is None or o.check is None else o.check(o.name, v)
    return out


def optional(check: Callable) -> Callable:
    """``check`` that lets ``None`` through."""
    return lambda name, v: None if v is None else check(name, v)


class _Deprecated(argparse.Action):
    """An earlier spelling of a flag: stores like the flag and says, on stderr, which one to use."""

    def __init__(self, option_strings, dest, new: str = "", **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: note: {option_string} is deprecated and will be removed in the next release; "
              f"use {self.new} (same meaning)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_options(group, options) -> None:
    """Add every :class:`Option` of ``options`` to the argparse ``group`` (the value lands in
    ``field``), with its deprecated ``aliases`` (hidden from ``--help``)."""
    for o in options:
        metavar = o.flag.lstrip("-").replace("-", "_").upper()  # as argparse names the flag
        if o.many:
            kw = dict(type=list_of(o.conv, o.what), nargs="+", metavar=metavar)
        elif o.choices is not None:
            kw = dict(choices=o.choices)
        else:
            kw = dict(type=o.conv, metavar=metavar)
        group.add_argument(o.flag, dest=o.field, help=o.help, **kw)
        for alias in o.aliases:
            group.add_argument(alias, dest=o.field, action=_Deprecated, new=o.flag, help=argparse.SUPPRESS, **kw)


def option_values(args: argparse.Namespace, options) -> dict:
    """The ``make_spec`` keywords of the parsed ``options`` (``None``: not given; lists flattened)."""
    return {o.field: flat(getattr(args, o.field)) if o.many else getattr(args, o.field) for o in options}
