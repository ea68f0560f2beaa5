"""Tiny random models, the zeros written into them, and what the compact model must look like.

The expectations (sizes, compressed shapes, parameter counts) are worked out here from the cuts
by plain shape arithmetic, independently of the library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from torch import nn
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    OPTConfig,
    OPTForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

HIDDEN, HEAD_DIM, HEADS, KV_HEADS, FFN, LAYERS, VOCAB = 32, 8, 4, 2, 48, 3, 100

LLAMA_PATHS = {
    "q": "self_attn.q_proj",
    "k": "self_attn.k_proj",
    "v": "self_attn.v_proj",
    "o": "self_attn.o_proj",
    "gate": "mlp.gate_proj",
    "up": "mlp.up_proj",
    "down": "mlp.down_proj",
}
OPT_PATHS = {
    "q": "self_attn.q_proj",
    "k": "self_attn.k_proj",
    "v": "self_attn.v_proj",
    "o": "self_attn.out_proj",
    "fc1": "fc1",
    "fc2": "fc2",
}


@dataclass
class Cut:
    """Zeros for one layer and the expected compact layer.

    heads: query heads whose output columns are zeroed. values: key/value heads whose value rows
    and bias are zeroed. out / up / gate: MLP units killed through the down (fc2) column, the up
    row + bias or the gate row + bias. fold / relu_dead (OPT): fc1 row zeroed with bias +0.5
    (constant unit, folded) or -0.5 (relu(b) = 0). rows / cols: weight rows / columns zeroed by
    path; silent: rows zeroed with their bias. expect: (mlp width, query heads, kv heads).
    compressed: path -> (out_live, in_live).
    """

    heads: list[int] = field(default_factory=list)
    values: list[int] = field(default_factory=list)
    out: list[int] = field(default_factory=list)
    up: list[int] = field(default_factory=list)
    gate: list[int] = field(default_factory=list)
    fold: list[int] = field(default_factory=list)
    relu_dead: list[int] = field(default_factory=list)
    rows: dict[str, list[int]] = field(default_factory=dict)
    cols: dict[str, list[int]] = field(default_factory=dict)
    silent: dict[str, list[int]] = field(default_factory=dict)
    expect: tuple[int, int, int] = (FFN, HEADS, KV_HEADS)
    compressed: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass
class Case:
    build: Callable[[], PreTrainedModel]
    cuts: list[Cut]
    plain: bool = False
    seq_len: int = 10


def _llama(**kw: object) -> LlamaForCausalLM:
    cfg = dict(
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        head_dim=HEAD_DIM,
        vocab_size=VOCAB,
    )
    cfg.update(kw)
    return LlamaForCausalLM(LlamaConfig(**cfg))


def _mistral() -> MistralForCausalLM:
    return MistralForCausalLM(
        MistralConfig(
            hidden_size=HIDDEN,
            intermediate_size=FFN,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            num_key_value_heads=KV_HEADS,
            head_dim=HEAD_DIM,
            vocab_size=VOCAB,
            sliding_window=4,  # shorter than the test sequences
        )
    )


def _qwen2(**kw: object) -> Qwen2ForCausalLM:
    cfg = dict(
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        vocab_size=VOCAB,
        tie_word_embeddings=True,
    )
    cfg.update(kw)
    return Qwen2ForCausalLM(Qwen2Config(**cfg))


def _opt() -> OPTForCausalLM:
    return OPTForCausalLM(
        OPTConfig(
            hidden_size=HIDDEN,
            ffn_dim=FFN,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            vocab_size=VOCAB,
            max_position_embeddings=64,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )
    )


ALL = [0, 1, 2, 3]
CASES: dict[str, Case] = {
    "llama": Case(
        _llama,
        [
            Cut(  # layer 0 without heads: the cache must still count the tokens
                heads=ALL,
                rows={"mlp.down_proj": list(range(16))},
                expect=(FFN, 0, 0),
                compressed={"mlp.down_proj": (16, FFN)},
            ),
            Cut(
                heads=[0, 1],
                out=list(range(0, FFN, 2)),
                cols={
                    "mlp.gate_proj": list(range(8)),
                    "mlp.up_proj": list(range(8)),
                    "self_attn.q_proj": [5],  # one zero column is dropped too
                },
                expect=(24, 2, 1),
                compressed={
                    "mlp.gate_proj": (24, 24),
                    "mlp.up_proj": (24, 24),
                    "self_attn.q_proj": (16, 31),
                },
            ),
            Cut(
                heads=[0],  # group 0 keeps head 1 and head 0 as padding
                out=list(range(6)),
                up=[6, 7],
                gate=[8],
                rows={"self_attn.o_proj": list(range(10))},
                expect=(39, 4, 2),
                # the padding head's o columns are zero and its q rows unused
                compressed={"self_attn.o_proj": (22, 24), "self_attn.q_proj": (24, 32)},
            ),
        ],
    ),
    "llama_bias": Case(
        lambda: _llama(attention_bias=True, mlp_bias=True),
        [
            Cut(values=[1], up=[0, 1, 2, 3], gate=[4, 5], out=[6], expect=(41, 2, 1)),
            Cut(
                heads=[3],
                out=list(range(FFN)),
                expect=(0, 4, 2),
                compressed={"self_attn.o_proj": (32, 24), "self_attn.q_proj": (24, 32)},
            ),
            Cut(
                heads=ALL,
                gate=list(range(10)),
                # units whose rows are zeroed without their bias stay (act(gate) * b_up,
                # act(b_gate) * up), but the zero rows go: their output is the bias
                rows={"mlp.up_proj": [20, 21], "mlp.gate_proj": [30]},
                expect=(38, 0, 0),
                compressed={"mlp.gate_proj": (37, 32), "mlp.up_proj": (36, 32)},
            ),
        ],
    ),
    "mistral": Case(
        _mistral,
        [
            Cut(heads=ALL, out=list(range(20)), expect=(28, 0, 0)),
            Cut(
                heads=[2, 3],
                cols={"self_attn.k_proj": list(range(0, HIDDEN, 2))},
                expect=(FFN, 2, 1),
                compressed={"self_attn.k_proj": (8, 16)},
            ),
            Cut(
                heads=[1],
                out=list(range(FFN)),
                expect=(0, 4, 2),
                compressed={"self_attn.o_proj": (32, 24), "self_attn.q_proj": (24, 32)},
            ),
        ],
    ),
    "qwen2": Case(
        _qwen2,
        [
            Cut(values=[0], up=[0, 1, 2], expect=(45, 2, 1)),
            Cut(heads=ALL, gate=[5], expect=(47, 0, 0)),
            Cut(
                heads=[0],
                rows={"self_attn.q_proj": [8, 9, 10, 11]},  # part of head 1 (bias stays)
                expect=(FFN, 4, 2),
                # q: padding head 0 (8 rows) and the 4 zero rows of head 1
                compressed={"self_attn.o_proj": (32, 24), "self_attn.q_proj": (20, 32)},
            ),
        ],
    ),
    "opt": Case(
        _opt,
        [
            Cut(heads=ALL, out=list(range(FFN)), expect=(0, 0, 0)),
            Cut(
                heads=[0, 2],
                out=list(range(5)),
                fold=[5, 6, 7],
                relu_dead=[8, 9],
                expect=(38, 2, 2),
            ),
            Cut(
                fold=list(range(10)),
                rows={"self_attn.out_proj": list(range(8))},
                expect=(38, 4, 4),
                compressed={"self_attn.out_proj": (24, 32)},
            ),
        ],
    ),
    # Rows and columns unused through the head couplings (head_dim 8, RoPE pairs d, d + 4).
    "llama_couplings": Case(
        _llama,
        [
            Cut(  # o columns (0, 3) and (1, 3): v row (0, 3) unused; v row (1, 5) zero:
                # o columns (2, 5) and (3, 5) read zeros
                cols={"self_attn.o_proj": [3, 11]},
                rows={"self_attn.v_proj": [13]},
                compressed={"self_attn.v_proj": (14, 32), "self_attn.o_proj": (32, 28)},
            ),
            Cut(  # k pair (0, 1/5) zero: q rows 1, 5, 9, 13 unused; q pair (2/6) zero in
                # both heads of group 1: k rows 10, 14 unused; q pair (0/4) zero in head 2
                # only and k row (1, 3) alone: nothing else goes
                rows={
                    "self_attn.k_proj": [1, 5, 11],
                    "self_attn.q_proj": [18, 22, 26, 30, 16, 20],
                },
                compressed={"self_attn.q_proj": (22, 32), "self_attn.k_proj": (11, 32)},
            ),
            Cut(rows={"self_attn.v_proj": list(range(8, 16))}, expect=(FFN, 2, 1)),  # group 1
        ],
    ),
    "opt_couplings": Case(
        _opt,
        [
            Cut(  # q row (1, 2) silent: k row 10 unused; v row 5 silent: o column 5 unused
                silent={"self_attn.q_proj": [10], "self_attn.v_proj": [5]},
                expect=(FFN, HEADS, HEADS),
                compressed={
                    "self_attn.q_proj": (31, 32),
                    "self_attn.k_proj": (31, 32),
                    "self_attn.v_proj": (31, 32),
                    "self_attn.out_proj": (32, 31),
                },
            ),
            Cut(cols={"self_attn.out_proj": list(range(8))}, expect=(FFN, 3, 3)),
            Cut(expect=(FFN, HEADS, HEADS)),
        ],
    ),
    # Uniform results: a plain config of the original architecture.
    "llama_uniform": Case(
        _llama, [Cut(heads=[0, 1], out=list(range(16)), expect=(32, 2, 1))] * LAYERS, plain=True
    ),
    "qwen2_uniform_3_heads": Case(
        lambda: _qwen2(num_key_value_heads=HEADS),
        [Cut(heads=[1], up=[3, 4], expect=(46, 3, 3))] * LAYERS,
        plain=True,
    ),
    "opt_uniform": Case(_opt, [Cut(out=list(range(8)), expect=(40, 4, 4))] * LAYERS, plain=True),
    # Uniform, but LlamaConfig rejects 3 heads for hidden size 32: remote code after all.
    "llama_uniform_3_heads": Case(
        lambda: _llama(num_key_value_heads=HEADS),
        [Cut(heads=[2], expect=(FFN, 3, 3))] * LAYERS,
    ),
}


def paths(model: PreTrainedModel) -> dict[str, str]:
    return OPT_PATHS if model.config.model_type == "opt" else LLAMA_PATHS


def layers(model: PreTrainedModel) -> nn.ModuleList:
    return model.model.decoder.layers if model.config.model_type == "opt" else model.model.layers


@torch.no_grad()
def apply_cut(model: PreTrainedModel, layer: nn.Module, cut: Cut) -> None:
    """Write the zeros of ``cut`` into ``layer``."""
    p = {role: layer.get_submodule(path) for role, path in paths(model).items()}
    hd = HEAD_DIM
    for h in cut.heads:
        p["o"].weight[:, h * hd : (h + 1) * hd] = 0
    for g in cut.values:
        p["v"].weight[g * hd : (g + 1) * hd] = 0
        if p["v"].bias is not None:
            p["v"].bias[g * hd : (g + 1) * hd] = 0
    down, first = (p["fc2"], p["fc1"]) if "fc1" in p else (p["down"], p["gate"])
    down.weight[:, cut.out] = 0
    for role, units in (("up", cut.up), ("gate", cut.gate)):
        if units:
            p[role].weight[units] = 0
            if p[role].bias is not None:
                p[role].bias[units] = 0
    for units, bias in ((cut.fold, 0.5), (cut.relu_dead, -0.5)):
        if units:
            first.weight[units] = 0
            first.bias[units] = bias
    for path, idx in cut.rows.items():
        layer.get_submodule(path).weight[idx] = 0
    for path, idx in cut.cols.items():
        layer.get_submodule(path).weight[:, idx] = 0
    for path, idx in cut.silent.items():
        lin = layer.get_submodule(path)
        lin.weight[idx] = 0
        lin.bias[idx] = 0


def expected_layer_parameters(model: PreTrainedModel, layer: nn.Module, cut: Cut) -> int:
    """Parameters of the compact layer, from ``cut.expect`` and ``cut.compressed``."""
    width, q, kv = cut.expect
    p = {role: layer.get_submodule(path) for role, path in paths(model).items()}
    linear_paths = set(paths(model).values())
    total = sum(
        t.numel()
        for name, t in layer.named_parameters()
        if name.rpartition(".")[0] not in linear_paths  # norms
    )
    shapes = {"q": (q * HEAD_DIM, HIDDEN), "k": (kv * HEAD_DIM, HIDDEN)}
    shapes |= {"v": (kv * HEAD_DIM, HIDDEN), "o": (HIDDEN, q * HEAD_DIM)}
    for role in ("gate", "up", "fc1"):
        shapes[role] = (width, HIDDEN)
    for role in ("down", "fc2"):
        shapes[role] = (HIDDEN, width)
    for role, lin in p.items():
        out_f, in_f = shapes[role]
        attention = role in ("q", "k", "v", "o")
        if (attention and q == 0) or (not attention and width == 0):  # only out bias survives
            total += out_f if role in ("o", "down", "fc2") and lin.bias is not None else 0
            continue
        live = cut.compressed.get(paths(model)[role])
        total += live[0] * live[1] if live else out_f * in_f
        total += out_f if lin.bias is not None else 0
    return total


def expected_parameters(model: PreTrainedModel, cuts: list[Cut]) -> int:
    total = sum(t.numel() for t in model.parameters())
    for layer, cut in zip(layers(model), cuts, strict=True):
        total += expected_layer_parameters(model, layer, cut)
        total -= sum(t.numel() for t in layer.parameters())
    return total


def build_case(name: str) -> tuple[PreTrainedModel, torch.Tensor]:
    """The zeroed model of case ``name`` (float32, eval) and input ids ``(2, seq_len)``."""
    case = CASES[name]
    torch.manual_seed(sum(map(ord, name)))
    model = case.build().eval()
    with torch.no_grad():  # biases and norms start at 0 / 1: make them non-trivial
        for n, t in model.named_parameters():
            if "norm" in n:
                t.uniform_(0.5, 1.5)
            elif n.endswith("bias"):
                t.normal_(0.0, 0.1)
    for layer, cut in zip(layers(model), case.cuts, strict=True):
        apply_cut(model, layer, cut)
    ids = torch.randint(3, VOCAB, (2, case.seq_len))
    return model, ids


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer: ``"w5 w7"`` -> ``[5, 7]``."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"w{i}": i for i in range(3, VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
