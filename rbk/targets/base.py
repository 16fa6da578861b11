"""The :class:`Target`: a pure, jittable function ``x (n, d) -> y (n, k)`` with what a result
file needs to describe it (``info``), the separation threshold and named parts."""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import jax
import jax.numpy as jnp


Array = jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class Target:
    """A target function with its description.

    Attributes:
      fn: jittable ``(n, d) -> (n, k)``.
      d, k: input and output dimensions.
      name: short name used in result files.
      threshold: error level that separates learners that learned the hard part of the
        target from those that did not (``k * alpha**2`` for the concept class).
      info: JSON-serialisable description (all parameters needed to rebuild it).
      parts: named jittable pieces of the target (e.g. ``F``, ``G``, ``composed``).
      distribution: the input distribution the target is defined on (``'gaussian'`` for the
        multi-index family); ``None``: not fixed, :func:`rbk.data.make_dataset` uses its own
        ``distribution`` argument (default ``'cube'``).
    """

    fn: Callable[[Array], Array]
    d: int
    k: int
    name: str
    threshold: float
    info: Mapping = dataclasses.field(default_factory=dict)
    parts: Mapping[str, Callable] = dataclasses.field(default_factory=dict)
    distribution: str | None = None

    def __call__(self, x: Array) -> Array:
        if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != self.d:  # static: free under jit
            raise ValueError(f"x must have shape (n, d={self.d}) (the target's input dimension), got {jnp.shape(x)}")
        return self.fn(x)
