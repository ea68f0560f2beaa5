"""Constrained-optimisation solvers: removal costs and optimal updates per curvature type.

:func:`solver_for` picks the solver of a curvature by its type (extensible with
``solver_for.register``); damping is an argument of that solve. Structures use the
:class:`CurvatureSolver` interface only, through the per-shot :class:`Solvers`.
"""

from __future__ import annotations

from llm_surgeon.solver.base import (
    DEFAULT_CHUNK_SIZE,
    SWEEPS,
    ChunkSize,
    CurvatureSolver,
    Sweep,
    UnsupportedCurvatureError,
    plan_chunks,
)
from llm_surgeon.solver.dense import DenseSolver
from llm_surgeon.solver.diagonal import DiagonalSolver
from llm_surgeon.solver.dispatch import solver_for
from llm_surgeon.solver.factor import DampedFactor, Damping, damped_cholesky, damping_schedule
from llm_surgeon.solver.kronecker import KroneckerSolver
from llm_surgeon.solver.live import LiveView, Solvers

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "SWEEPS",
    "ChunkSize",
    "CurvatureSolver",
    "DampedFactor",
    "Damping",
    "DenseSolver",
    "DiagonalSolver",
    "KroneckerSolver",
    "LiveView",
    "Solvers",
    "Sweep",
    "UnsupportedCurvatureError",
    "damped_cholesky",
    "damping_schedule",
    "plan_chunks",
    "solver_for",
]
