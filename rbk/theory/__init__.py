"""Kernel learning curves predicted from the spectrum, for several input distributions.

* :mod:`rbk.theory.solver`: the eigenlearning estimate for any spectrum (eigenvalues with
  multiplicities, the target's power per eigenvalue): :func:`predict`, :func:`grid_curve`,
  :func:`optimal_curve`, :func:`n_star`, :func:`curve_grid`.
* :mod:`rbk.theory.cube`: the uniform Boolean cube (exact Walsh spectra of dot-product kernels,
  the target's power per Walsh degree, :func:`predict_learners` for Experiment 1).
* :mod:`rbk.theory.sphere`: the sphere of radius ``sqrt(d)`` (exact Gegenbauer coefficients) and
  the exact harmonic parts of rbk's polynomial targets (:func:`harmonic_power`).
* :mod:`rbk.theory.gaussian`: Gaussian inputs (harmonic degree times radial eigenvectors) and
  :func:`learning_curves` over a list of ``d``.

Derivations and checks: ``docs/learning_curves.md``.
"""

from rbk.theory.cube import (
    EXACT_MAX_D,
    VALUE_ULPS,
    Spectrum,
    all_cube_points,
    cube_points,
    degree_transform,
    evaluate_target,
    kernel_spectrum,
    krawtchouk,
    paper_power,
    predict_learners,
    spectral_learners,
    spectrum_from_values,
    target_power,
    transform_weights,
    walsh_hadamard,
    walsh_power_exact,
    walsh_power_monte_carlo,
)
from rbk.theory.gaussian import chi_rule, default_max_degree, gaussian_spectrum, learning_curves, predicted_curves
from rbk.theory.solver import (
    N_MAX,
    OPTIMAL_RIDGE_RANGE,
    Eigensystem,
    curve_grid,
    grid_curve,
    n_star,
    optimal_curve,
    predict,
)
from rbk.theory.sphere import (
    HarmonicSpectrum,
    angle_rule,
    check_rotation_invariant,
    fischer_decomposition,
    gegenbauer,
    harmonic_dimension,
    harmonic_power,
    power_matrices,
    sphere_moment,
    sphere_spectrum,
    target_polynomial,
)

# the names the cube module had before it became a package (kept for existing callers and tests)
_transform_weights = transform_weights
_evaluate = evaluate_target
_power_exact = walsh_power_exact
_power_monte_carlo = walsh_power_monte_carlo

__all__ = [
    "EXACT_MAX_D", "VALUE_ULPS", "Spectrum", "all_cube_points", "cube_points", "degree_transform", "evaluate_target",
    "kernel_spectrum", "krawtchouk", "paper_power", "predict_learners", "spectral_learners", "spectrum_from_values", "target_power",
    "transform_weights", "walsh_hadamard", "walsh_power_exact", "walsh_power_monte_carlo", "chi_rule",
    "gaussian_spectrum", "default_max_degree", "learning_curves", "predicted_curves", "N_MAX", "OPTIMAL_RIDGE_RANGE", "Eigensystem", "curve_grid", "grid_curve",
    "n_star", "optimal_curve", "predict", "HarmonicSpectrum", "angle_rule", "check_rotation_invariant",
    "fischer_decomposition", "gegenbauer", "harmonic_dimension", "harmonic_power", "power_matrices", "sphere_moment",
    "sphere_spectrum", "target_polynomial",
]  # fmt: skip
