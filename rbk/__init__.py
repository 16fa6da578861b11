"""rbk — ResNet beyond kernels.

Modules (one concept each): :mod:`rbk.targets` (the concept class and the other target
families), :mod:`rbk.data` (input distributions and splits), :mod:`rbk.models` (the learners),
:mod:`rbk.flax_models` (the same networks in Flax), :mod:`rbk.train` (compiled, vmapped SGD),
:mod:`rbk.kernels` (exact NNGP/NTK and kernel predictors), :mod:`rbk.theory` (learning curves
predicted from kernel spectra), :mod:`rbk.sweep` (the experiment engine: studies, the driver and
the results store), :mod:`rbk.experiments` (the experiments, one package per family, and their
registry), :mod:`rbk.stats` (selection, confidence intervals, sample-complexity estimates),
:mod:`rbk.plots` (the figures' shared styles) and :mod:`rbk.cli` (the ``rbk`` command).

Submodules are imported on use (``from rbk import train`` or ``rbk.train`` after ``import rbk``),
so that ``import rbk.kernels`` needs only jax, numpy and scipy.
"""

__version__ = "0.1.0"

__all__ = ["cli", "data", "experiments", "flax_models", "kernels", "models", "plots", "stats", "sweep",
           "targets", "theory", "train", "__version__"]  # fmt: skip

_MODULES = frozenset(__all__) - {"__version__"}


def __getattr__(name: str):
    if name in _MODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _MODULES)
