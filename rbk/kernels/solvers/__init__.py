"""Kernel ridge solvers: :mod:`.dense` (Cholesky / eigh on a stored Gram) and :mod:`.cg` (matrix-free
preconditioned conjugate gradients, the Gram never stored)."""
