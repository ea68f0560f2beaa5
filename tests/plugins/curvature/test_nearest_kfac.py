"""nearest-kfac against the Van Loan-Pitsianis nearest Kronecker product (SVD of R(F))."""

from __future__ import annotations

import pytest
import torch
from curvature_oracle import (
    make_batches,
    make_model,
    modules_of,
    nearest_kronecker,
    per_token,
    rearrange,
    rel_err,
    token_fisher,
)

from llm_surgeon.plugins.curvature.kfac import KFACConfig, KFACCurvature
from llm_surgeon.plugins.curvature.nearest_kfac import (
    NearestKFACConfig,
    NearestKFACCurvature,
    orthonormalise,
    rayleigh_ritz,
)

#: One layer per family whose rearranged Fisher has a clear spectral gap (fast convergence).
CASES = {
    "llama": "model.layers.0.self_attn.v_proj",
    "llama-bias": "model.layers.1.self_attn.o_proj",
    "opt": "model.decoder.layers.1.fc2",
    "opt-nobias": "model.decoder.layers.1.self_attn.q_proj",
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    model = make_model(request.param)
    batches = make_batches(model)
    pm = next(p for p in modules_of(model) if p.name == CASES[request.param])
    d_out, d_in = pm.shape[0], pm.shape[1] + pm.has_bias
    fisher = token_fisher(*per_token(model, batches, [pm.name])[pm.name])
    return model, batches, pm, d_out, d_in, fisher


def nearest(model, pm, batches, **options):
    options.setdefault("dtype", "float64")
    return NearestKFACCurvature(NearestKFACConfig(**options)).estimate(model, [pm], batches, progress=False)


def test_rank1_matches_van_loan_pitsianis(case):
    model, batches, pm, d_out, d_in, fisher = case
    result = nearest(model, pm, batches, iterations=10)
    assert result.passes == 1 + 2 * 10
    curvature = result.curvatures[pm.name]
    assert curvature.rank == 1
    assert rel_err(curvature.to_dense(), nearest_kronecker(fisher, d_out, d_in, 1)) < 1e-5
    sigma_1 = torch.linalg.svdvals(rearrange(fisher, d_out, d_in))[0]
    assert result.info["sigma"][pm.name][0] == pytest.approx(float(sigma_1), rel=1e-8)
    g, a = curvature.factors[0]  # the leading term is positive semi-definite
    assert torch.linalg.eigvalsh(g).min() > -1e-10 * g.diagonal().sum()
    assert torch.linalg.eigvalsh(a).min() > -1e-10 * a.diagonal().sum()


def test_error_below_kfac_and_decreasing_in_rank(case):
    model, batches, pm, d_out, d_in, fisher = case
    kfac = KFACCurvature(KFACConfig(dtype="float64")).estimate(model, [pm], batches, progress=False)
    errors = [rel_err(kfac.curvatures[pm.name].to_dense(), fisher)]
    for rank in (1, 2, 3):
        curvature = nearest(model, pm, batches, rank=rank, iterations=2).curvatures[pm.name]
        assert curvature.rank == rank
        errors.append(rel_err(curvature.to_dense(), fisher))
    assert all(later <= earlier + 1e-12 for earlier, later in zip(errors, errors[1:], strict=False)), errors
    best = [rel_err(nearest_kronecker(fisher, d_out, d_in, r), fisher) for r in (1, 2, 3)]
    assert all(e >= b - 1e-12 for e, b in zip(errors[1:], best, strict=True))


def test_error_decreases_with_iterations(case):
    model, batches, pm, _, _, fisher = case
    errors = [rel_err(nearest(model, pm, batches, iterations=k).curvatures[pm.name].to_dense(), fisher)
              for k in (1, 2, 4)]
    assert errors[0] >= errors[1] - 1e-12 >= errors[2] - 2e-12, errors


def test_rank2_converges_to_truncated_svd(case):
    model, batches, pm, d_out, d_in, fisher = case
    curvature = nearest(model, pm, batches, rank=2, iterations=20).curvatures[pm.name]
    assert rel_err(curvature.to_dense(), nearest_kronecker(fisher, d_out, d_in, 2)) < 1e-3


def test_warm_start_skips_the_kfac_pass(case):
    model, batches, pm, d_out, d_in, fisher = case
    first = nearest(model, pm, batches, iterations=10)
    again = nearest(model, pm, batches, iterations=1)
    warm = NearestKFACCurvature(NearestKFACConfig(dtype="float64", iterations=1)).estimate(
        model, [pm], batches, previous=first.curvatures, progress=False
    )
    assert warm.passes == 2 and warm.info["warm_start"] and again.passes == 3
    target = nearest_kronecker(fisher, d_out, d_in, 1)
    assert rel_err(warm.curvatures[pm.name].to_dense(), target) < 1e-5
    assert rel_err(warm.curvatures[pm.name].to_dense(), target) < rel_err(again.curvatures[pm.name].to_dense(), target)
    cold = NearestKFACCurvature(NearestKFACConfig(dtype="float64", iterations=1, warm_start=False)).estimate(
        model, [pm], batches, previous=first.curvatures, progress=False
    )
    assert cold.passes == 3 and not cold.info["warm_start"]


def test_rayleigh_ritz_is_truncated_svd_of_a_small_matrix():
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(9, 16, generator=gen, dtype=torch.float64)  # M = R(F) with d_out=3, d_in=4
    u = orthonormalise(torch.linalg.svd(m)[0][:, :2].T.reshape(2, 3, 3) + 0.0)
    b = (u.reshape(2, 9) @ m).reshape(2, 4, 4)  # M^T U
    terms, sigmas = rayleigh_ritz(u, b)
    approx = sum(torch.outer(g.flatten(), a.flatten()) for g, a in terms)
    u_, s_, vh_ = torch.linalg.svd(m)
    best = (u_[:, :2] * s_[:2]) @ vh_[:2]
    assert sigmas == pytest.approx(s_[:2].tolist(), rel=1e-10)
    # terms are symmetrised, so compare on the symmetric part of M
    sym = lambda x: ((x.reshape(3, 3, 4, 4) + x.reshape(3, 3, 4, 4).transpose(0, 1)) / 2)  # noqa: E731
    sym2 = lambda x: (sym(x) + sym(x).transpose(2, 3)) / 2  # noqa: E731
    torch.testing.assert_close(approx.reshape(3, 3, 4, 4), sym2(best))
