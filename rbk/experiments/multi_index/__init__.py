"""Multi-index targets on Gaussian inputs (Damian, Lee & Soltanolkotabi, COLT 2022).

* :mod:`.exp3` (Experiment 3, :class:`Exp3Spec`): test error against N for several input
  dimensions d, ``n*(d)`` and the slope of ``log n*`` against ``log d`` per learner;
* :mod:`.exp3b` (Experiment 3b, :class:`Exp3bSpec`): the features learned on a source target,
  transferred to a new head on the same subspace, against a network trained from scratch, the
  exact NTK and random features.

Each module holds its study, profiles, summary and figures.
"""

from rbk.experiments.multi_index.exp3 import Exp3Spec
from rbk.experiments.multi_index.exp3b import Exp3bSpec

__all__ = ["Exp3Spec", "Exp3bSpec"]
