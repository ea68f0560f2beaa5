"""Sampled Fisher: with many label samples the estimate approaches the exact expected Fisher."""

from __future__ import annotations

import torch
from curvature_oracle import make_batches, make_model, modules_of

from llm_surgeon.plugins.curvature.diagonal import DiagonalConfig, DiagonalFisher
from llm_surgeon.plugins.curvature.kfac import KFACConfig, KFACCurvature


def expected_output_gradient_moments(model, batch, pm):
    """Per position ``n``: ``E_y[g_n g_n^T] = sum_t J_tn^T (diag p_t - p_t p_t^T) J_tn`` and ``a_n``.

    Labels are drawn independently per position from the model's softmax, so the cross
    terms between positions vanish. ``J_tn`` is the Jacobian of the logits at position
    ``t`` with respect to the layer output at position ``n`` (computed by autograd).
    """
    captured = {}

    def substitute(module, args, output):
        captured["x"] = args[0].detach()
        z = output.detach().requires_grad_(True)
        captured["z"] = z
        return z

    handle = pm.module.register_forward_hook(substitute)
    try:
        logits = model(input_ids=batch).logits[0, :-1]  # (T, V), batch of one window
    finally:
        handle.remove()
    z = captured["z"]
    probs = torch.softmax(logits.detach(), dim=-1)
    n_pos, vocab = logits.shape
    d_out = z.shape[-1]
    moments = torch.zeros(n_pos, d_out, d_out, dtype=torch.float64)
    for t in range(n_pos):
        p = probs[t]
        cov = torch.diag(p) - torch.outer(p, p)
        jac = torch.stack([
            torch.autograd.grad(logits[t, c], z, retain_graph=True)[0][0, :-1] for c in range(vocab)
        ])  # (V, n_pos, d_out)
        moments += torch.einsum("cnd,ce,enf->ndf", jac, cov, jac)
    x = captured["x"][0, :-1]
    if pm.has_bias:
        x = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)
    return moments, x


def test_sampled_fisher_approaches_expected_fisher():
    model = make_model("llama-bias")
    batches = make_batches(model, n_batches=1, batch=1, seqlen=6)
    pm = modules_of(model)[-1]  # the last down_proj (with bias)
    moments, a = expected_output_gradient_moments(model, batches[0], pm)
    n = a.shape[0]
    g_expected = moments.sum(0) / n
    d_expected = torch.einsum("ndd,ni->di", moments, a * a) / n

    options = dict(dtype="float64", fisher_type="sampled", samples=1500, seed=3)
    kfac = KFACCurvature(KFACConfig(**options)).estimate(model, [pm], batches, progress=False)
    ((g, _),) = kfac.curvatures[pm.name].factors
    diag = DiagonalFisher(DiagonalConfig(**options)).estimate(model, [pm], batches, progress=False)
    d = diag.curvatures[pm.name].values

    assert float((g - g_expected).norm() / g_expected.norm()) < 0.1
    assert float((d - d_expected).norm() / d_expected.norm()) < 0.1
    # ... while the empirical Fisher (the data's labels) is a different matrix
    emp = KFACCurvature(KFACConfig(dtype="float64")).estimate(model, [pm], batches, progress=False)
    ((g_emp, _),) = emp.curvatures[pm.name].factors
    assert float((g_emp - g_expected).norm() / g_expected.norm()) > 0.3


def test_sampled_fisher_is_seeded():
    model = make_model("llama")
    batches = make_batches(model, n_batches=1, batch=2, seqlen=6)
    pm = modules_of(model)[0]
    est = [KFACCurvature(KFACConfig(fisher_type="sampled", samples=2, seed=s)).estimate(
        model, [pm], batches, progress=False).curvatures[pm.name].factors[0][0] for s in (0, 0, 1)]
    assert torch.equal(est[0], est[1]) and not torch.equal(est[0], est[2])
