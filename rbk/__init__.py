"""rbk — ResNet beyond kernels.

Modules (one concept each): :mod:`rbk.targets` (the concept class), :mod:`rbk.data`
(input distributions and splits), :mod:`rbk.models` (the learners), :mod:`rbk.train`
(compiled, vmapped SGD), :mod:`rbk.kernels` (exact NNGP/NTK and kernel predictors),
:mod:`rbk.sweep` (experiment grids and the results store), :mod:`rbk.stats` (selection,
confidence intervals, sample-complexity estimates), :mod:`rbk.plots` and :mod:`rbk.cli`.

Submodules are imported on use (``from rbk import train``), so that ``import rbk.kernels``
needs only jax, numpy and scipy.
"""

__version__ = "0.1.0"
