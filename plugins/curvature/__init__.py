"""Built-in curvature estimators: identity, activations, diagonal, kfac, nearest-kfac."""

from __future__ import annotations

from llm_surgeon import hookimpl


@hookimpl
def register_curvatures(register):
    from llm_surgeon.plugins.curvature.activations import ActivationsConfig, ActivationsCurvature
    from llm_surgeon.plugins.curvature.diagonal import DiagonalConfig, DiagonalFisher
    from llm_surgeon.plugins.curvature.identity import IdentityCurvature
    from llm_surgeon.plugins.curvature.kfac import KFACConfig, KFACCurvature
    from llm_surgeon.plugins.curvature.nearest_kfac import NearestKFACConfig, NearestKFACCurvature

    register("identity", IdentityCurvature,
             description="F = I ⊗ I: magnitude pruning, no passes over the data")
    register("activations", ActivationsCurvature, config=ActivationsConfig,
             description="F = I ⊗ A, A = input second moment (forward passes only)")
    register("diagonal", DiagonalFisher, config=DiagonalConfig,
             description="exact diagonal of the token-level Fisher (Optimal Brain Damage)")
    register("kfac", KFACCurvature, config=KFACConfig,
             description="classic K-FAC: G ⊗ A from output-gradient and input second moments")
    register("nearest-kfac", NearestKFACCurvature, config=NearestKFACConfig,
             description="sum of R_K Kronecker products nearest to the Fisher (power iteration)")
