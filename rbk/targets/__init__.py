"""Target functions: the concept class ``H(x) = beta*F(x) + alpha*G(F(x))`` and its instances.

Every target is a pure, jittable function ``x (n, d) -> y (n, k)`` wrapped in a
:class:`Target`, which also carries what a result file needs to describe it (``info``),
the separation threshold (``k * alpha**2`` for the concept class) and named parts
(``F``, ``G``, ``base``, ``composed``) for diagnostics.

Constructors
------------
``paper_instance``   Allen-Zhu & Li (2019), Experiments 1 and 2: degree-2 parities ``F`` and a
                     degree-``g_degree`` parity ``G`` on the Boolean cube.
``random_instance``  ``F`` and ``G`` random two-layer networks with smooth activations from a
                     menu (our choice, documented below).
``concept``          any user-defined jittable ``F: (n, d) -> (n, k)`` and ``G: (n, k) -> (n, k)``.

Multi-index models on Gaussian inputs (Damian, Lee & Soltanolkotabi, COLT 2022)
-------------------------------------------------------------------------------
``f*(x) = g(U x)`` with ``x ~ N(0, I_d)``, ``U`` an ``(r, d)`` matrix with orthonormal rows and
``g(z) = sum_a c_a h_a(z)`` a polynomial of degree ``p`` written in the orthonormal Hermite
basis ``h_a(z) = prod_i He_{a_i}(z_i) / sqrt(a_i!)`` (``He``: probabilists' Hermite
polynomials). Since ``z = U x ~ N(0, I_r)``, ``E[f*^2] = sum c_a^2 = 1`` exactly and the
energy of ``f*`` in Hermite degree ``l`` is exactly ``sum_{|a| = l} c_a^2`` (``h_a(U x)`` lies in
the degree-``|a|`` Wiener chaos of ``x``). ``E[grad^2 f*] = U^T E[grad^2 g] U`` and ``E[grad^2 g]``
is read off the degree-2 coefficients (Stein's lemma); the paper assumes it has rank ``r``.
The threshold is the energy of the degree-``p`` part: the error of a learner that has
learned everything but that part.

``multi_index``        any ``U`` and coefficients (the general constructor).
``single_index``       ``g = a h_2(z) + b h_p(z)`` on one random direction.
``sum_of_products``    ``g = a r^{-1/2} sum_i h_2(z_i) + b h_alpha(z)`` with the degree-``p``
                       monomial ``alpha`` spread evenly over the ``r`` directions.
``random_multi_index`` random coefficients of every degree in ``2..p``, equal energy per degree.
``with_head``          a new ``g'`` on the same ``U`` (transfer).

The learners and sweeps only use ``target(x)``, ``target.d``, ``target.k``,
``target.threshold``, ``target.distribution`` and ``target.info``.

Files: :mod:`rbk.targets.base` (:class:`Target`), :mod:`rbk.targets.concept` (the concept class),
:mod:`rbk.targets.multi_index`, :mod:`rbk.targets.hierarchy`.
"""

from rbk.targets.base import Array, Target
from rbk.targets.concept import complexity, concept, paper_instance, random_instance
from rbk.targets.hierarchy import (
    HIERARCHY_FIRST,
    HIERARCHY_READOUTS,
    MAX_QUADRATURE_NODES,
    hermite_profile,
    hierarchy,
    hierarchy_degrees,
)
from rbk.targets.multi_index import (
    ORTHONORMAL_TOL,
    RANK_TOL,
    expected_hessian,
    expected_hessian_g,
    hermite,
    multi_index,
    multi_indices,
    random_multi_index,
    random_subspace,
    single_index,
    sum_of_products,
    with_head,
)

__all__ = [
    "Array", "Target", "complexity", "concept", "paper_instance", "random_instance", "HIERARCHY_FIRST",
    "HIERARCHY_READOUTS", "MAX_QUADRATURE_NODES", "hermite_profile", "hierarchy", "hierarchy_degrees",
    "ORTHONORMAL_TOL", "RANK_TOL", "expected_hessian", "expected_hessian_g", "hermite", "multi_index",
    "multi_indices", "random_multi_index", "random_subspace", "single_index", "sum_of_products", "with_head",
]  # fmt: skip
