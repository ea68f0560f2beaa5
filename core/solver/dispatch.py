"""Which solver handles which curvature: a dispatch on the curvature's type.

``solver_for(curvature, damping)`` returns the :class:`~llm_surgeon.solver.base.CurvatureSolver`
for a curvature. A third-party curvature type adds its solver with::

    from llm_surgeon.solver.dispatch import solver_for

    @solver_for.register
    def _(curvature: MyCurvature, damping: Damping) -> CurvatureSolver:
        return MySolver(curvature, damping)
"""

from __future__ import annotations

from functools import singledispatch

from llm_surgeon.curvature.types import (
    Curvature,
    DenseCurvature,
    DiagonalCurvature,
    KroneckerCurvature,
)
from llm_surgeon.solver.base import CurvatureSolver, UnsupportedCurvatureError
from llm_surgeon.solver.dense import DenseSolver
from llm_surgeon.solver.diagonal import DiagonalSolver
from llm_surgeon.solver.factor import Damping
from llm_surgeon.solver.kronecker import KroneckerSolver


@singledispatch
def solver_for(curvature: Curvature, damping: Damping) -> CurvatureSolver:
    """The solver of ``curvature`` under relative ``damping``.

    Args:
        curvature: a layer's curvature (usually restricted to its live sub-matrix).
        damping: relative damping of the factors (Kronecker curvatures); the diagonal
            and dense solvers take none.

    Raises:
        UnsupportedCurvatureError: no solver is registered for the curvature's type.
    """
    raise UnsupportedCurvatureError(
        f"no solver is registered for curvature type {type(curvature).__name__}; register one "
        "with @llm_surgeon.solver.solver_for.register"
    )


@solver_for.register
def _kronecker(curvature: KroneckerCurvature, damping: Damping) -> CurvatureSolver:
    return KroneckerSolver(curvature, damping)


@solver_for.register
def _diagonal(curvature: DiagonalCurvature, damping: Damping) -> CurvatureSolver:
    return DiagonalSolver(curvature)


@solver_for.register
def _dense(curvature: DenseCurvature, damping: Damping) -> CurvatureSolver:
    return DenseSolver(curvature)
