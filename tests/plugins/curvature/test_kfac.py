"""Classic K-FAC cross-checked against curvlinops' KFAC (empirical Fisher, KFAC-expand)."""

from __future__ import annotations

import pytest
import torch
from curvature_oracle import make_batches, make_model, modules_of
from torch import nn

from llm_surgeon.plugins.curvature.kfac import KFACConfig, KFACCurvature

curvlinops = pytest.importorskip("curvlinops")


class _NextTokenLogits(nn.Module):
    """``ids (B, S) -> logits (B, vocab, S - 1)``: curvlinops' layout for sequence CE."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids).logits[:, :-1].permute(0, 2, 1)


@pytest.mark.parametrize("family", ["llama", "llama-bias"])
def test_kfac_matches_curvlinops(family):
    model = make_model(family)
    batches = make_batches(model, n_batches=2, batch=2, seqlen=8)
    modules = modules_of(model)
    ours = KFACCurvature(KFACConfig(dtype="float64")).estimate(model, modules, batches, progress=False)

    # Inputs at the last position: curvlinops' KFAC-expand averages A over all S
    # positions, we over the S - 1 positions that predict a token.
    last: dict[str, torch.Tensor] = {}

    def hook(name, bias):
        def fn(module, args, output):
            x = args[0][:, -1].detach()
            if bias:
                x = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)
            last[name] = last.get(name, 0) + x.T @ x
        return fn

    handles = [pm.module.register_forward_hook(hook(pm.name, pm.has_bias)) for pm in modules]
    with torch.no_grad():
        for b in batches:
            model(input_ids=b)
    for h in handles:
        h.remove()

    wrapper = _NextTokenLogits(model)
    params = [p for pm in modules for p in pm.module.parameters()]
    data = [(b, b[:, 1:]) for b in batches]
    kfac = curvlinops.KFACLinearOperator(
        wrapper, nn.CrossEntropyLoss(reduction="sum"), params, data,
        fisher_type="empirical", kfac_approx="expand", separate_weight_and_bias=False,
        check_deterministic=False,
    )
    kfac.compute_kronecker_factors()
    n_seq, seqlen = sum(b.shape[0] for b in batches), batches[0].shape[1]
    n_tokens = n_seq * (seqlen - 1)
    for pm in modules:
        ((g, a),) = ours.curvatures[pm.name].factors
        key = "model." + pm.name
        g_ref = kfac._gradient_covariances[key] / n_tokens  # sum reduction: an unnormalised sum
        a_ref = (kfac._input_covariances[key] * n_seq * seqlen - last[pm.name]) / n_tokens
        torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-14)
        torch.testing.assert_close(a, a_ref, rtol=1e-9, atol=1e-12)
