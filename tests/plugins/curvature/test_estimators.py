"""identity, activations, diagonal and kfac against their definitions (brute force, float64)."""

from __future__ import annotations

import pytest
import torch
from curvature_oracle import FAMILIES, make_batches, make_model, modules_of, per_token, token_fisher

from llm_surgeon.curvature import DiagonalCurvature, KroneckerCurvature
from llm_surgeon.registry import Kind, get_registry


def estimator(name: str, **options):
    record = get_registry().get(Kind.CURVATURE, name)
    return record.create(record.make_config(**options) if options else None)


@pytest.fixture(scope="module", params=FAMILIES)
def case(request):
    model = make_model(request.param)
    batches = make_batches(model)
    modules = modules_of(model)
    tokens = per_token(model, batches, [pm.name for pm in modules])
    return model, batches, modules, tokens


def test_identity_is_magnitude(case):
    model, batches, modules, _ = case
    result = estimator("identity").estimate(model, modules, batches, progress=False)
    assert result.passes == 0
    for pm in modules:
        c = result.curvatures[pm.name]
        assert isinstance(c, KroneckerCurvature) and c.factors == ((None, None),)
        assert (c.d_out, c.d_in) == (pm.shape[0], pm.shape[1] + pm.has_bias)
        assert torch.equal(c.to_dense(), torch.eye(c.d_out * c.d_in))


def test_activations_is_input_second_moment(case):
    model, batches, modules, tokens = case
    result = estimator("activations", dtype="float64").estimate(model, modules, batches, progress=False)
    assert result.passes == 1
    for pm in modules:
        a, _ = tokens[pm.name]
        ((g, a_est),) = result.curvatures[pm.name].factors
        assert g is None
        torch.testing.assert_close(a_est, a.T @ a / a.shape[0], rtol=1e-10, atol=1e-12)


def test_kfac_is_product_of_second_moments(case):
    model, batches, modules, tokens = case
    result = estimator("kfac", dtype="float64").estimate(model, modules, batches, progress=False)
    assert result.passes == 1 and result.seconds_passes > 0
    for pm in modules:
        a, g = tokens[pm.name]
        ((g_est, a_est),) = result.curvatures[pm.name].factors
        torch.testing.assert_close(g_est, g.T @ g / g.shape[0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(a_est, a.T @ a / a.shape[0], rtol=1e-10, atol=1e-12)


def test_diagonal_is_exact_fisher_diagonal(case):
    model, batches, modules, tokens = case
    result = estimator("diagonal", dtype="float64").estimate(model, modules, batches, progress=False)
    for pm in modules:
        a, g = tokens[pm.name]
        c = result.curvatures[pm.name]
        assert isinstance(c, DiagonalCurvature)
        torch.testing.assert_close(c.values, (g * g).T @ (a * a) / a.shape[0], rtol=1e-10, atol=1e-14)
    pm = modules[0]  # and against the diagonal of the dense token-level Fisher
    dense = token_fisher(*tokens[pm.name])
    torch.testing.assert_close(result.curvatures[pm.name].values.flatten(), dense.diagonal(),
                               rtol=1e-10, atol=1e-14)


def test_float32_default_is_close_and_float32(case):
    model, batches, modules, tokens = case
    result = estimator("kfac").estimate(model, modules[:2], batches, progress=False)
    ((g_est, a_est),) = result.curvatures[modules[0].name].factors
    assert g_est.dtype == torch.float32
    a, _ = tokens[modules[0].name]
    torch.testing.assert_close(a_est.double(), a.T @ a / a.shape[0], rtol=1e-5, atol=1e-6)


def test_model_left_as_found(case):
    model, batches, modules, _ = case
    flags = [p.requires_grad for p in model.parameters()]
    estimator("diagonal").estimate(model, modules, batches, progress=False)
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks for m in model.modules())


def test_factor_device_option(case):
    model, batches, modules, _ = case
    result = estimator("kfac", device="cpu").estimate(model, modules[:1], batches, progress=False)
    ((g, a),) = result.curvatures[modules[0].name].factors
    assert g.device.type == "cpu" and a.device.type == "cpu"


def test_bad_options_are_config_errors():
    from llm_surgeon.errors import ConfigError

    record = get_registry().get(Kind.CURVATURE, "kfac")
    with pytest.raises(ConfigError, match="fisher_type"):
        record.make_config(fisher_type="exact")
    with pytest.raises(ConfigError, match="dtype"):
        record.make_config(dtype="float16")
    with pytest.raises(ConfigError, match="samples"):
        record.make_config(samples=0)
    with pytest.raises(ConfigError, match="rank"):
        get_registry().get(Kind.CURVATURE, "nearest-kfac").make_config(rank=0)


@pytest.mark.parametrize("name", ["activations", "diagonal", "kfac", "nearest-kfac"])
def test_non_finite_statistics_name_the_module(name):
    from llm_surgeon.errors import NumericalError

    model = make_model("llama")
    with torch.no_grad():
        model.model.layers[0].self_attn.o_proj.weight[0, 0] = float("inf")
    modules = modules_of(model)
    first_bad = "model.layers.0.mlp.gate_proj" if name == "activations" else "model.layers.0.self_attn.q_proj"
    with pytest.raises(NumericalError, match=first_bad.replace(".", r"\.")):
        estimator(name).estimate(model, modules, make_batches(model, n_batches=1), progress=False)
