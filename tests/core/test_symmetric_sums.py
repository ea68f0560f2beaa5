"""Symmetric sums of outer products, one triangle at a time, against the full float64 product."""

from __future__ import annotations

import pytest
import torch

from llm_surgeon.curvature import ModuleSums
from llm_surgeon.curvature.symmetric import add_gram_upper_, gram_blocks, gram_upper, mirror_upper_

F64 = torch.float64


@pytest.mark.parametrize("d", [1, 7, 255, 256, 257, 600])
@pytest.mark.parametrize("block", [1, 64, 256])
def test_upper_gram_mirrored_is_the_full_product(d, block):
    x = torch.randn(13, d, generator=torch.Generator().manual_seed(d), dtype=F64)
    full = mirror_upper_(gram_upper(x, block))
    torch.testing.assert_close(full, x.T @ x, rtol=1e-12, atol=1e-12)
    assert torch.equal(full, full.T)


def test_blocks_cover_the_columns_evenly():
    assert gram_blocks(576) == [0, 192, 384, 576]
    assert gram_blocks(1536) == [0, 256, 512, 768, 1024, 1280, 1536]
    assert gram_blocks(10, 256) == [0, 10]
    bounds = gram_blocks(1000, 300)
    assert bounds[0] == 0 and bounds[-1] == 1000 and max(b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)) <= 300


def test_only_the_upper_block_triangle_is_touched():
    x = torch.randn(5, 6, dtype=F64)
    out = torch.full((6, 6), 7.0, dtype=F64)
    add_gram_upper_(out, x, block=2)
    ref = x.T @ x + 7.0
    upper = torch.ones(6, 6, dtype=torch.bool).triu()
    assert torch.allclose(out[upper], ref[upper])
    assert torch.all(out[4:, :4] == 7.0)  # below the diagonal blocks: never written


def test_module_sums_accumulate_one_triangle_and_mirror_in_the_mean():
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(9, 300, generator=gen, dtype=F64) for _ in range(3)]
    sums = ModuleSums(2, torch.device("cpu"))
    for x in batches:
        sums.add_products(0, x, x)  # symmetric: y is x
        sums.add_products(1, x, x.clone())  # general product
    assert sums.upper == [True, False]
    ref = sum(x.T @ x for x in batches) / 27
    sym = sums.pop_mean(0, 27, (300, 300), F64)
    gen_ = sums.pop_mean(1, 27, (300, 300), F64)
    torch.testing.assert_close(sym, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gen_, ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(sym, sym.T) and sums.sums == [None, None]


def test_ready_upper_terms_and_mixing_kinds():
    x = torch.randn(4, 5, dtype=F64)
    sums = ModuleSums(1, torch.device("cpu"))
    sums.add(0, gram_upper(x), upper=True)
    sums.add_products(0, x, x)
    torch.testing.assert_close(sums.pop_mean(0, 2, (5, 5), F64), x.T @ x, rtol=1e-12, atol=1e-12)
    sums.add_products(0, x, x)
    with pytest.raises(ValueError, match="symmetric"):
        sums.add(0, x.T @ x)


def test_float32_accumulation_is_close_to_float64():
    # The statistics dtype of a run: float32 products summed in float32 over 32 batches
    # of 511 tokens, checked against the float64 sum of the same data.
    gen = torch.Generator().manual_seed(1)
    sums32 = ModuleSums(1, torch.device("cpu"))
    ref = torch.zeros(200, 200, dtype=F64)
    for _ in range(32):
        x = torch.randn(511, 200, generator=gen) * torch.linspace(0.1, 3.0, 200)
        sums32.add_products(0, x, x)
        ref += x.double().T @ x.double()
    mean = sums32.pop_mean(0, 32 * 511, (200, 200), torch.float32)
    rel = float((mean.double() - ref / (32 * 511)).norm() / (ref / (32 * 511)).norm())
    assert rel < 1e-6


def test_modules_reading_one_input_share_their_input_moment():
    from llm_surgeon.model import adapter_for
    from llm_surgeon.plugins.curvature.kfac import KFACCurvature
    from llm_surgeon.testing import tiny_model

    model = tiny_model("llama")
    modules = adapter_for(model).prunable_modules(model)
    batches = [torch.randint(0, model.config.vocab_size, (2, 6), generator=torch.Generator().manual_seed(0))]
    result = KFACCurvature().estimate(model, modules, batches, progress=False)
    by_role = {pm.role: result.curvatures[pm.name] for pm in modules if pm.layer == 0}
    a = {role: c.factors[0][1] for role, c in by_role.items()}
    assert a["q"] is a["k"] is a["v"] and a["gate"] is a["up"] and a["o"] is not a["q"]
    assert by_role["q"].factors[0][0] is not by_role["k"].factors[0][0]
    distinct = {t.data_ptr(): t.numel() * t.element_size() for c in result.curvatures.values() for t in c.tensors()}
    assert result.nbytes == sum(distinct.values()) < sum(c.nbytes for c in result.curvatures.values())


def test_packed_sums_hold_the_upper_block_triangle_only():
    from llm_surgeon.curvature.symmetric import PackedUpper

    packed = PackedUpper(1536, F64, torch.device("cpu"))
    assert packed.flat.numel() == 21 * 256 * 256  # 6 blocks: 21 of 36
    x = torch.randn(7, 1536, dtype=F64)
    packed.add_gram_(x)
    packed.add_(gram_upper(x))
    torch.testing.assert_close(packed.full(), 2 * x.T @ x, rtol=1e-12, atol=1e-12)


def test_a_sum_over_ranks_of_the_packed_tensor_is_the_packed_sum():
    # What a distributed run does with ModuleSums.sums: add the tensors of every rank.
    gen = torch.Generator().manual_seed(3)
    xs = [torch.randn(5, 300, generator=gen, dtype=F64) for _ in range(2)]
    ranks = [ModuleSums(1, torch.device("cpu")) for _ in xs]
    for sums, x in zip(ranks, xs, strict=True):
        sums.add_products(0, x, x)
    ranks[0].sums[0].add_(ranks[1].sums[0])
    mean = ranks[0].pop_mean(0, 10, (300, 300), F64)
    torch.testing.assert_close(mean, sum(x.T @ x for x in xs) / 10, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("d", [1, 255, 256, 257, 576, 1536])
def test_packed_size_is_what_a_packed_sum_stores(d):
    from llm_surgeon.curvature.symmetric import PackedUpper, packed_size

    assert packed_size(d) == PackedUpper(d, torch.float32, torch.device("cpu")).flat.numel()
    assert d * (d + 1) // 2 <= packed_size(d) <= d * d
