"""Wanda on single layers (against a brute-force ranking) and on tiny models."""

from __future__ import annotations

import pytest
import torch
from layerwise_helpers import check_masks, layer_problem, tiny_session

from llm_surgeon.errors import ConfigError
from llm_surgeon.plugins.baselines._layerwise import select_lowest
from llm_surgeon.plugins.baselines.wanda import (
    ColumnNormStatistic,
    WandaConfig,
    WandaMethod,
    wanda_mask,
    wanda_scores,
)


def test_scores_are_weight_times_input_norm():
    w, x = layer_problem(d_out=5, d_in=7, tokens=50)
    stat = ColumnNormStatistic(7)
    for chunk in x.split(16):
        stat.add_batch(chunk)
    scores = wanda_scores(w, stat.norms())
    for i in range(5):
        for j in range(7):
            assert float(scores[i, j]) == pytest.approx(abs(float(w[i, j])) * float(x[:, j].norm()))


def test_row_mask_matches_brute_force_sort():
    w, x = layer_problem(d_out=6, d_in=20)
    scores = wanda_scores(w, x.norm(dim=0))
    removed = wanda_mask(scores, keep=0.6)
    for r in range(6):
        order = sorted(range(20), key=lambda j: float(scores[r, j]))
        assert set(removed[r].nonzero().flatten().tolist()) == set(order[:8])


def test_layer_group_has_exact_total():
    w, x = layer_problem(d_out=6, d_in=20)
    removed = wanda_mask(wanda_scores(w, x.norm(dim=0)), keep=0.3, group="layer")
    assert int(removed.sum()) == 84
    assert len(set(removed.sum(dim=1).tolist())) > 1


def test_nm_pattern_and_intermediate_shot():
    w, x = layer_problem(d_out=8, d_in=32)
    scores = wanda_scores(w, x.norm(dim=0))
    half = wanda_mask(scores, keep=0.75, nm=(2, 4))
    assert half.sum(dim=1).tolist() == [8] * 8
    assert int(half.reshape(8, 8, 4).sum(dim=2).max()) <= 2  # at most n per group
    final = wanda_mask(scores, keep=0.5, nm=(2, 4), alive=~half)
    assert bool(final[half].all())  # removed weights stay removed
    assert torch.equal(final.reshape(8, 8, 4).sum(dim=2), torch.full((8, 8), 2))


def test_nm_removes_n_of_m():
    w, x = layer_problem(d_out=4, d_in=16)
    removed = wanda_mask(wanda_scores(w, x.norm(dim=0)), keep=0.25, nm=(3, 4))
    assert torch.equal(removed.reshape(4, 4, 4).sum(dim=2), torch.full((4, 4), 3))


def test_existing_mask_counts_first():
    scores = torch.tensor([[5.0, 1.0, 2.0, 3.0]])
    alive = torch.tensor([[False, True, True, True]])
    assert wanda_mask(scores, keep=0.5, alive=alive).tolist() == [[True, True, False, False]]


def test_select_lowest_never_takes_protected():
    scores = torch.tensor([[1.0, 2.0, 3.0]])
    protected = torch.tensor([[True, False, False]])
    assert select_lowest(scores, 5, protected=protected).tolist() == [[False, True, True]]


def test_config_rejects_unknown_group():
    with pytest.raises(ConfigError):
        WandaConfig(group="column")


@pytest.mark.parametrize("kind", ["llama", "opt"])
@pytest.mark.parametrize("structure", ["element", "2:4"])
def test_method_end_to_end_on_tiny_models(kind, structure):
    session = tiny_session(kind, structure)
    before = {s.pm.name: s.pm.module.weight.detach().clone() for s in session.states}
    log = WandaMethod().run_shot(session, 1, 0.5)
    assert log.achieved == pytest.approx(0.5)
    check_masks(session)
    for s in session.states:
        w = s.pm.module.weight.detach()
        torch.testing.assert_close(w[s.mask], before[s.pm.name][s.mask])  # no update
        assert s.mask.sum(dim=1).tolist() == [s.mask.shape[1] // 2] * s.mask.shape[0]
        if structure == "2:4":
            groups = s.mask.reshape(s.mask.shape[0], -1, 4).sum(dim=2)
            assert torch.equal(groups, torch.full_like(groups, 2))
