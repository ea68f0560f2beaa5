"""SparseGPT on single layers (against brute-force OBS) and on tiny models."""

from __future__ import annotations

import pytest
import torch
from layerwise_helpers import (
    check_masks,
    layer_problem,
    reconstruction_error,
    tiny_session,
)

from llm_surgeon.plugins.baselines._layerwise import nm_protected
from llm_surgeon.plugins.baselines.sparsegpt import (
    HessianStatistic,
    SparseGPTConfig,
    SparseGPTMethod,
    inverse_cholesky,
    sparsegpt_curvature,
    sparsegpt_prune,
    sparsegpt_solver,
)
from llm_surgeon.plugins.baselines.wanda import wanda_mask, wanda_scores


def _hessian(x: torch.Tensor) -> torch.Tensor:
    stat = HessianStatistic(x.shape[1], torch.float64)
    for chunk in x.split(128):
        stat.add_batch(chunk)
    return stat.hessian()


def test_hessian_statistic_is_two_over_n_gram():
    _, x = layer_problem(tokens=300)
    torch.testing.assert_close(_hessian(x), 2 * x.T @ x / 300)


@pytest.mark.parametrize("nm", [None, (2, 4)], ids=["50%", "2:4"])
def test_reconstruction_error_sparsegpt_below_wanda_below_magnitude(nm):
    w, x = layer_problem()
    h = _hessian(x)
    sgpt = sparsegpt_prune(w, h, keep=0.5, nm=nm, blocksize=16).weight
    wanda = w * ~wanda_mask(wanda_scores(w, x.norm(dim=0)), keep=0.5, nm=nm)
    magnitude = w * ~wanda_mask(w.abs(), keep=0.5, nm=nm)
    errors = [reconstruction_error(w, v, x) for v in (sgpt, wanda, magnitude)]
    assert errors[0] < errors[1] < errors[2], errors


@pytest.mark.parametrize("selection", ["block", "row"])
def test_exact_unstructured_sparsity(selection):
    w, x = layer_problem(d_out=10, d_in=45)  # 45 columns: blocks of 16 do not divide evenly
    res = sparsegpt_prune(w, _hessian(x), keep=0.6, blocksize=16, selection=selection)
    assert int(res.removed.sum()) == round(0.4 * w.numel())
    assert torch.equal(res.weight == 0, res.removed)
    if selection == "row":
        assert res.removed.sum(dim=1).tolist() == [18] * 10


def test_block_selection_is_not_per_row():
    w, x = layer_problem(d_out=16, d_in=64)
    res = sparsegpt_prune(w, _hessian(x), keep=0.5, blocksize=64)
    assert len(set(res.removed.sum(dim=1).tolist())) > 1  # one threshold over the block


def test_exact_nm_pattern():
    w, x = layer_problem(d_out=12, d_in=48)
    res = sparsegpt_prune(w, _hessian(x), keep=0.5, nm=(2, 4), blocksize=10)  # 10 -> 8
    groups = (res.weight != 0).reshape(12, 12, 4).sum(dim=2)
    assert torch.equal(groups, torch.full_like(groups, 2))
    for n, kept in ((1, 3), (3, 1)):  # n:m removes n of every m (as the n:m structure)
        res = sparsegpt_prune(w, _hessian(x), keep=1 - n / 4, nm=(n, 4), blocksize=16)
        groups = (res.weight != 0).reshape(12, 12, 4).sum(dim=2)
        assert torch.equal(groups, torch.full_like(groups, kept))


def _column_by_column(w, h_damped, removed):
    """Brute-force sequential OBS: at step j, the inverse of H over the free columns j.."""
    w = w.clone()
    for j in range(w.shape[1]):
        inv = torch.linalg.inv(h_damped[j:, j:])
        q = torch.where(removed[:, j], torch.zeros_like(w[:, j]), w[:, j])
        w[:, j:] -= torch.outer((w[:, j] - q) / inv[0, 0], inv[0])
    return w


@pytest.mark.parametrize("blocksize", [1, 3, 8, 17, 128])
def test_lazy_updates_match_column_by_column_for_a_fixed_mask(blocksize):
    w, x = layer_problem(d_out=8, d_in=40)
    h = _hessian(x)
    removed = torch.rand(w.shape, generator=torch.Generator().manual_seed(3)) < 0.5
    res = sparsegpt_prune(w, h, keep=0.5, blocksize=blocksize, fixed_removed=removed)
    h_damped = h + res.damping * torch.eye(40, dtype=h.dtype)
    expected = _column_by_column(w, h_damped, removed)
    torch.testing.assert_close(res.weight, expected, rtol=1e-9, atol=1e-9)
    assert torch.equal(res.removed, removed)


def test_predicted_cost_is_quadratic_model_of_i_kron_h():
    w, x = layer_problem(d_out=6, d_in=20)
    h = _hessian(x)
    res = sparsegpt_prune(w, h, keep=0.5, blocksize=8)
    delta = res.weight - w
    h_damped = h + res.damping * torch.eye(20, dtype=h.dtype)
    f = sparsegpt_curvature(h_damped, d_out=6).to_dense()
    assert res.predicted_cost == pytest.approx(float(delta.flatten() @ f @ delta.flatten()) / 2, rel=1e-9)
    # the shared solver, damping A = H as SparseGPT does, agrees
    solver = sparsegpt_solver(h, d_out=6, percdamp=0.01)
    assert solver.quadratic(delta) == pytest.approx(res.predicted_cost, rel=1e-9)


def test_first_column_scores_are_the_solver_element_costs():
    """Column 0 sees the full H⁻¹: SparseGPT's w²/U_00² is twice the OBS element cost."""
    w, x = layer_problem(d_out=6, d_in=20)
    h = _hessian(x)
    upper, _, _ = inverse_cholesky(h, 0.01)
    costs = sparsegpt_solver(h, d_out=6).element_costs(w)
    torch.testing.assert_close(w[:, 0] ** 2 / upper[0, 0] ** 2, 2 * costs[:, 0])


def test_sequential_obs_is_never_better_than_the_joint_obs_update():
    """For its own mask, the joint OBS update of the shared solver (and least squares) is
    at least as good as SparseGPT's left-to-right one."""
    w, x = layer_problem(d_out=6, d_in=24)
    h = _hessian(x)
    res = sparsegpt_prune(w, h, keep=0.5, blocksize=8, percdamp=0.0)
    solver = sparsegpt_solver(h, d_out=6, percdamp=0.0)
    joint, joint_cost = solver.remove(w, res.removed)
    assert joint_cost <= res.predicted_cost * (1 + 1e-9)
    optimal = torch.zeros_like(w)
    for r in range(6):
        keep = ~res.removed[r]
        optimal[r, keep] = torch.linalg.lstsq(x[:, keep], x @ w[r]).solution
    torch.testing.assert_close(joint, optimal, rtol=1e-6, atol=1e-8)
    err_sgpt = reconstruction_error(w, res.weight, x)
    assert reconstruction_error(w, optimal, x) <= err_sgpt + 1e-9
    assert err_sgpt < reconstruction_error(w, w * ~res.removed, x)  # the update helps


def test_respects_existing_mask_and_dead_columns():
    w, x = layer_problem(d_out=8, d_in=32)
    x[:, 5] = 0.0  # an input that is never active
    alive = torch.rand(w.shape, generator=torch.Generator().manual_seed(4)) > 0.3
    res = sparsegpt_prune(w * alive, _hessian(x), keep=0.5, alive=alive, blocksize=8)
    assert not bool(res.removed[~alive].logical_not().any())
    assert bool(res.removed[:, 5].all())
    assert res.dead_columns == 1
    assert int(res.removed.sum()) == 128
    assert torch.isfinite(res.weight).all()


def test_inverse_cholesky_escalates_damping_on_singular_h():
    h = torch.diag(torch.tensor([1.0, -0.5, 1.0, 1.0], dtype=torch.float64))
    upper, damp, escalations = inverse_cholesky(h, percdamp=0.01)  # indefinite until damp > 0.5
    assert escalations == 2 and damp == pytest.approx(0.625)
    torch.testing.assert_close(upper.T @ upper, torch.linalg.inv(h + damp * torch.eye(4, dtype=h.dtype)))


def test_nm_protected_keeps_top_n_and_never_dead():
    scores = torch.tensor([[4.0, 3.0, 2.0, 1.0, 9.0, 8.0]])
    forced = torch.tensor([[True, False, False, False, False, False]])
    kept = nm_protected(scores, 2, 4, forced)
    assert kept.tolist() == [[False, True, True, False, True, True]]


@pytest.mark.parametrize("kind", ["llama", "opt"])
@pytest.mark.parametrize("structure", ["element", "2:4"])
def test_method_end_to_end_on_tiny_models(kind, structure):
    session = tiny_session(kind, structure)
    tokens = session.calibration[:2]
    with torch.no_grad():
        dense_logits = session.model(tokens).logits
    method = SparseGPTMethod(SparseGPTConfig(blocksize=16))
    log = method.run_shot(session, 1, 0.5)
    assert log.achieved == pytest.approx(0.5)
    assert session.size() == pytest.approx(0.5)
    assert log.predicted_cost > 0 and log.seconds["solver"] > 0
    check_masks(session)
    for s in session.states:
        assert s.remaining == s.pm.numel // 2, s.pm.name
        if structure == "2:4":
            groups = s.mask.reshape(s.mask.shape[0], -1, 4).sum(dim=2)
            assert torch.equal(groups, torch.full_like(groups, 2)), s.pm.name
    with torch.no_grad():
        logits = session.model(tokens).logits
    assert torch.isfinite(logits).all() and not torch.allclose(logits, dense_logits)


@pytest.mark.parametrize("structure", ["element", "2:4"])
def test_multi_shot_masks_only_grow(structure):
    session = tiny_session("llama", structure)
    method = SparseGPTMethod(SparseGPTConfig(blocksize=8, true_sequential=True))
    previous = [s.mask.clone() for s in session.states]
    for shot, target in enumerate([0.8, 0.65, 0.5], start=1):
        method.run_shot(session, shot, target)
        assert session.size() == pytest.approx(target, abs=2e-3)
        for before, s in zip(previous, session.states, strict=True):
            assert not bool((s.mask & ~before).any())
        previous = [s.mask.clone() for s in session.states]
        check_masks(session)
    if structure == "2:4":
        for s in session.states:
            groups = s.mask.reshape(s.mask.shape[0], -1, 4).sum(dim=2)
            assert torch.equal(groups, torch.full_like(groups, 2))
