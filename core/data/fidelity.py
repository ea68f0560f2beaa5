"""Fidelity of a (pruned) model to its dense reference, beyond perplexity.

* **Agreement** on the held-out chat prompts, along the dense model's own greedy
  responses (teacher-forced, so both models see the same text): the mean over response
  tokens of ``KL(p_dense || p_model)`` of the next-token distributions (nats), and the
  greedy-token match rate, the fraction of those positions where the model's most likely
  next token is the dense model's. For the dense model against itself they are exactly
  0 and 1 (same computation, same numbers).
* **Questions**: accuracy of the greedy answers to the bundled short questions
  (:mod:`llm_surgeon.data.questions`), next to the dense model's.
* **Examples**: the model's greedy response to each held-out prompt and question, next
  to the dense model's, to read what the numbers mean.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from llm_surgeon.data.config import FidelityConfig
from llm_surgeon.data.questions import score
from llm_surgeon.data.reference import (
    DenseReference,
    decode,
    fidelity_set,
    greedy,
    response_logprobs,
)
from llm_surgeon.errors import ConfigError
from llm_surgeon.util.progress import progress_bar

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def kl_and_match(dense: Tensor, model: Tensor) -> tuple[Tensor, Tensor]:
    """Per position ``KL(p_dense || p_model)`` (float64) and whether the argmax tokens agree.

    Args:
        dense, model: log-probabilities ``(positions, vocab)``.

    Returns:
        ``(kl, match)``, both ``(positions,)``.
    """
    dense, model = dense.double(), model.double()
    p = dense.exp()
    terms = torch.where(p > 0, p * (dense - model), torch.zeros_like(p))
    return terms.sum(-1), dense.argmax(-1) == model.argmax(-1)


def agreement(model: nn.Module, reference: DenseReference, prompt_ids: list[list[int]], *,
              progress: bool = True) -> dict[str, Any]:
    """Mean KL to the dense model and greedy-token match rate along the dense responses.

    Returns:
        ``kl`` (mean over all response tokens, nats), ``match_rate``, ``positions``, and
        per prompt ``kl_per_prompt``.
    """
    kls, matches, per_prompt = [], [], []
    pairs = list(zip(prompt_ids, reference.responses, strict=True))
    for i, (prompt, response) in enumerate(progress_bar(pairs, desc="agreement", enabled=progress)):
        lp = response_logprobs(model, prompt, response)
        dense = reference.logprobs(i)
        if lp.shape != dense.shape:
            raise ConfigError(f"the model's vocabulary ({lp.shape[-1]}) differs from the "
                              f"reference's ({dense.shape[-1]})")
        kl, match = kl_and_match(dense, lp)
        kls.append(kl)
        matches.append(match)
        per_prompt.append(float(kl.mean()))
    kl, match = torch.cat(kls), torch.cat(matches)
    return {"kl": float(kl.mean()), "match_rate": float(match.double().mean()),
            "positions": int(kl.numel()), "kl_per_prompt": per_prompt}


def _examples(fs, reference: DenseReference | None, responses: list[str]) -> list[dict[str, Any]]:
    dense = reference.meta["response_texts"] if reference else [None] * len(responses)
    return [{"prompt": p[-1]["content"], "dense": d, "model": r}
            for p, d, r in zip(fs.prompts, dense, responses, strict=True)]


def _answers(fs, reference: DenseReference | None, answers: list[str],
             correct: list[bool]) -> list[dict[str, Any]]:
    rows = []
    for i, (q, a, c) in enumerate(zip(fs.questions, answers, correct, strict=True)):
        row = {"id": q.id, "question": q.question, "answers": list(q.answers), "model": a, "correct": c}
        if reference is not None:
            row.update(dense=reference.meta["answers"][i], dense_correct=reference.meta["correct"][i])
        rows.append(row)
    return rows


def measure_fidelity(model: nn.Module, tokenizer: PreTrainedTokenizerBase, config: FidelityConfig,
                     reference: DenseReference | None = None, *, progress: bool = True) -> dict[str, Any]:
    """Agreement with ``reference`` (if given), question accuracy and side-by-side examples.

    Args:
        model: the model to check (its tokenizer must be the reference's).
        tokenizer: its tokenizer, with a chat template.
        config: which prompts and questions, response and answer lengths.
        reference: the dense reference (:func:`llm_surgeon.data.reference.build_reference`);
            ``None`` measures question accuracy only.
        progress: show progress bars.

    Returns:
        ``kl``, ``match_rate``, ``positions`` (``None`` without a reference),
        ``question_accuracy``, ``dense_question_accuracy``, ``questions``,
        ``heldout_prompts``, ``response_tokens``, ``kl_per_prompt``, ``heldout`` (prompt,
        dense and model response) and ``answers`` (per question, both answers, correct).
    """
    fs = fidelity_set(tokenizer, config)
    result: dict[str, Any] = {"kl": None, "match_rate": None, "positions": None}
    if reference is not None:
        if len(reference.responses) != len(fs.prompts):
            raise ConfigError("the dense reference was computed for other fidelity settings")
        result.update(agreement(model, reference, fs.prompt_ids, progress=progress))
    responses = [decode(tokenizer, r) for r in greedy(model, tokenizer, fs.prompt_ids, config.response_tokens,
                                                      config, progress, "responses")]
    answers = [decode(tokenizer, r) for r in greedy(model, tokenizer, fs.question_ids, config.answer_tokens,
                                                    config, progress, "answers")]
    scored = score(answers, fs.questions)
    dense_correct = reference.meta["correct"] if reference else None
    result.update(
        question_accuracy=scored["accuracy"],
        dense_question_accuracy=sum(dense_correct) / len(dense_correct) if dense_correct else None,
        questions=scored["n"],
        heldout_prompts=len(fs.prompts),
        response_tokens=config.response_tokens,
        heldout=_examples(fs, reference, responses),
        answers=_answers(fs, reference, answers, scored["correct"]),
    )
    return result
