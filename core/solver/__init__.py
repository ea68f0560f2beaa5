"""Constrained-optimisation solvers: removal costs and optimal updates per curvature type.

Each :class:`~llm_surgeon.curvature.Curvature` returns its solver from ``.solver()``;
structures only use the :class:`CurvatureSolver` interface.
"""

from __future__ import annotations

from llm_surgeon.solver.base import (
    DEFAULT_CHUNK_SIZE,
    ChunkSize,
    CurvatureSolver,
    UnsupportedCurvatureError,
    plan_chunks,
)
from llm_surgeon.solver.dense import DenseSolver
from llm_surgeon.solver.diagonal import DiagonalSolver
from llm_surgeon.solver.kronecker import KroneckerSolver
from llm_surgeon.solver.live import LiveView, SolverCache

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "ChunkSize",
    "CurvatureSolver",
    "DenseSolver",
    "DiagonalSolver",
    "KroneckerSolver",
    "LiveView",
    "SolverCache",
    "UnsupportedCurvatureError",
    "plan_chunks",
]
