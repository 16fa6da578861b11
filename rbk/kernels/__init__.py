r"""Exact infinite-width NNGP / NTK of the learners, their empirical counterparts, and predictors.

Everything here is computed in float64 whatever the caller's ``jax_enable_x64`` flag: JAX
work runs inside a local ``enable_x64`` context (:func:`x64`; the flag is restored on exit) and
results come back as ``numpy.float64`` arrays. The package imports only numpy, scipy and jax
(plus :mod:`rbk._checks` and :mod:`rbk.models`), so it also works in the neural-tangents
environment (jax 0.5.3). Derivations: ``docs/kernels.md``.

Where each concept lives
------------------------
``closed_form.py``   the one layer recursion (NNGP, backward kernels, NTK) and the Gaussian
                     moments per activation (:data:`GAUSSIAN_MOMENTS`)
``descriptions.py``  :class:`ArchDescription`; the named architectures ``2nn``, ``3nn``,
                     ``3resnet`` (:func:`describe_arch`, groups :data:`LAYERS`) and
                     :func:`deepquad_description`
``analytic.py``      :class:`KernelFn` / :func:`kernel_fn`, :func:`model_kernel_fn`,
                     :class:`DescribedKernelFn` / :func:`described_kernel_fn`
``empirical.py``     :class:`EmpiricalKernelFn` / :func:`empirical_kernel_fn` (finite width)
``assemble.py``      blocks, padding and the symmetric Gram fill
``solvers/dense.py`` :func:`ridge_solve`, :func:`gradient_flow_predict` (Cholesky, eigh)
``solvers/cg.py``    matrix-free PCG with a Nystrom preconditioner, the cube's Hamming table,
                     :func:`choose_solver`
``predict.py``       :func:`fit_predict` (ridge chosen on validation), :func:`fit_bytes`,
                     :func:`random_features_fit_predict`, :func:`linearized_fit_predict`
``checks.py``        argument checks shared by all of them (:func:`check_ridges`, ...)

Conventions (neural-tangents' ``ntk`` parameterization, as in :class:`rbk.models.Model`)
------------------------------------------------------------------------------------------
All parameters ``N(0, 1)``; ``h1 = W_std/sqrt(d) x W + b_std b1``, ``a1 = relu(h1)``;
``h2 = W_std/sqrt(m) a1 U + b_std b2``, ``a2 = relu(h2)``; features ``phi = a1`` (``2nn``),
``a2`` (``3nn``), ``a1 + a2`` (``3resnet``, post-ReLU skip); ``out = W_std/sqrt(m) phi A``,
no output bias. With ``sw2 = W_std**2``, ``sb2 = b_std**2`` and for a pair of inputs::

    S1   = sw2 x.x'/d + sb2                          (pre-activation covariance, layer 1)
    K_l  = E[relu(u) relu(v)] = sqrt(q q')/(2 pi) (sin t + (pi - t) cos t)
    D_l  = E[relu'(u) relu'(v)] = (pi - t)/(2 pi),   cos t = S_l / sqrt(q q')
    M_l  = E[relu(u)] = sqrt(q / (2 pi))             (q = S_l(x, x), q' = S_l(x', x'))
    S2   = sw2 K_1 + sb2

    NNGP:  2nn   sw2 K1
           3nn   sw2 K2
           3resnet  sw2 (K1 + K2 + M1(x) M2(x') + M2(x) M1(x'))

The NTK is a sum over parameter groups of ``rate_g * Theta_g`` with (``B2 = sw2 D2``;
``B1 = sw2 D1`` for 2nn, ``sw2 D1 B2`` for 3nn, ``sw2 D1 (1 + B2)`` for 3resnet)::

    Theta_A  = NNGP        Theta_U = sw2 K1 B2     Theta_b2 = sb2 B2
    Theta_W  = sw2 (x.x'/d) B1                     Theta_b1 = sb2 B1

(these are the recursion of ``closed_form.py`` on :func:`describe_arch`'s descriptions).
``trainable`` picks the groups (default all: the ordinary NTK; without ``'A'``: the
frozen-output NTK; ``('W', 'U')`` with ``layer_rates``: the theory-faithful variant whose
offsets ``dW``, ``dU`` alone move).

Public API
----------
``kernel_fn(arch, *, W_std, b_std, trainable=None, layer_rates=None)`` -> :class:`KernelFn`,
called as ``kfn(x1, x2=None, get=('nngp', 'ntk'), block_size=None)`` (neural-tangents'
convention: a string ``get`` returns one array, a tuple a namedtuple in that order).
``model_kernel_fn(model)``: the same for an ``ntk``-parameterized :class:`rbk.models.Model`
(trainable groups and rates taken from its variant).
``empirical_kernel_fn(model, ...)``: the finite-width NNGP / NTK of a drawn network from
``jax.vjp`` / ``jax.jvp`` of ``model.apply`` (never a full Jacobian in memory).
Predictors (float64, Cholesky; eigh with a warning only on failure): :func:`ridge_solve`,
:func:`gradient_flow_predict` (``nt.predict.gradient_descent_mse``'s convention),
:func:`fit_predict` (kernel ridge with the ridge chosen on validation; above N = 20000 by
matrix-free preconditioned conjugate gradients, ``solver='cg'``, never storing the Gram),
:func:`random_features_fit_predict`, :func:`linearized_fit_predict`. :func:`fit_bytes` is the one
estimate of a fit's host memory; :func:`fit_predict` refuses a fit that exceeds the machine.
"""

from rbk.kernels.analytic import DescribedKernelFn, KernelFn, described_kernel_fn, kernel_fn, model_kernel_fn
from rbk.kernels.checks import DEFAULT_BLOCK, GETS, MAX_RIDGES, check_ridges, x64
from rbk.kernels.closed_form import GAUSSIAN_MOMENTS
from rbk.kernels.descriptions import LAYERS, ArchDescription, check_description, deepquad_description, describe_arch
from rbk.kernels.empirical import OUTPUTS, EmpiricalKernelFn, empirical_kernel_fn
from rbk.kernels.predict import (DEFAULT_RIDGES, SOLVERS, fit_bytes, fit_predict, linearized_fit_predict,
                                 random_features_fit_predict)
from rbk.kernels.solvers.cg import (CG_BLOCK, CG_MAX_ITER, CG_RANK, CG_TOL, DENSE_MAX_N, PRECISIONS, KernelOperator,
                                    choose_solver, cube_table, cube_words)
from rbk.kernels.solvers.dense import KernelSolveWarning, gradient_flow_predict, ridge_solve

__all__ = [
    # exact and empirical kernels
    "KernelFn", "kernel_fn", "model_kernel_fn", "DescribedKernelFn", "described_kernel_fn",
    "EmpiricalKernelFn", "empirical_kernel_fn",
    # architecture descriptions and the recursion's tables
    "ArchDescription", "check_description", "describe_arch", "deepquad_description", "LAYERS", "GAUSSIAN_MOMENTS",
    # solvers and predictors
    "ridge_solve", "gradient_flow_predict", "fit_predict", "fit_bytes", "random_features_fit_predict",
    "linearized_fit_predict", "choose_solver", "KernelSolveWarning", "KernelOperator", "cube_words", "cube_table",
    # checks, context and constants
    "check_ridges", "x64", "GETS", "OUTPUTS", "DEFAULT_BLOCK", "DEFAULT_RIDGES", "MAX_RIDGES", "SOLVERS", "PRECISIONS",
    "DENSE_MAX_N", "CG_TOL", "CG_RANK", "CG_MAX_ITER", "CG_BLOCK",
]  # fmt: skip
