"""The dense reference of fidelity checks: what a pruned model is compared with.

Computed from the dense model before pruning, so that no second copy of the model is
needed afterwards:

* the held-out prompts (bundled, never used for calibration) rendered with the chat
  template, and the dense model's greedy response to each (at most ``response_tokens``,
  up to and including EOS);
* the dense next-token log-probabilities along those responses, teacher-forced, one
  prompt per forward pass: ``(positions, vocab)`` float32 in ``logprobs.npy``, read
  back memory-mapped, so they cost disk, not memory, while the model is pruned;
* the dense greedy answers to the questions.

A reference lives in a folder (``reference.json`` + ``logprobs.npy``); ``reference.json``
is written last, so a folder with it is complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import torch
from torch import Tensor, nn

from llm_surgeon.data.config import FidelityConfig
from llm_surgeon.data.conversations import (
    HELDOUT_PROMPTS,
    Messages,
    bundled,
    load_conversations,
    render_ids,
)
from llm_surgeon.data.generation import Decoding, generate_replies
from llm_surgeon.data.questions import Question, load_questions, score
from llm_surgeon.util.progress import progress_bar
from llm_surgeon.util.torch_util import model_device

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

#: Version of the layout of ``reference.json``.
REFERENCE_VERSION = 1


@attrs.frozen
class FidelitySet:
    """The held-out prompts and questions of a fidelity check, rendered for one tokenizer."""

    prompts: list[Messages]
    prompt_ids: list[list[int]]
    questions: list[Question]
    question_ids: list[list[int]]


def fidelity_set(tokenizer: PreTrainedTokenizerBase, config: FidelityConfig) -> FidelitySet:
    """The first ``config.prompts`` held-out prompts and ``config.questions`` questions, rendered."""
    prompts = load_conversations(bundled(HELDOUT_PROMPTS), prompts=True)[: config.prompts]
    questions = load_questions(limit=config.questions)
    as_user = [[{"role": "user", "content": q.question}] for q in questions]
    return FidelitySet(
        prompts=prompts,
        prompt_ids=[render_ids(tokenizer, p, add_generation_prompt=True) for p in prompts],
        questions=questions,
        question_ids=[render_ids(tokenizer, m, add_generation_prompt=True) for m in as_user],
    )


def decode(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    """A reply as text, without special tokens."""
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


def greedy(model: nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: list[list[int]],
           max_new_tokens: int, config: FidelityConfig, progress: bool, desc: str) -> list[list[int]]:
    """Greedy replies to rendered prompts."""
    decoding = Decoding(max_new_tokens=max_new_tokens, batch_size=config.batch_size)
    return generate_replies(model, tokenizer, prompts, decoding, progress=progress, desc=desc)


@torch.no_grad()
def response_logprobs(model: nn.Module, prompt: list[int], response: list[int]) -> Tensor:
    """Teacher-forced next-token log-probabilities along ``response``, ``(len(response), vocab)``.

    Row ``t`` is the distribution of the token after ``prompt + response[:t]`` (float32, CPU).
    """
    ids = torch.tensor([prompt + response[:-1]], device=model_device(model))
    logits = model(input_ids=ids, use_cache=False).logits[0, len(prompt) - 1 :]
    return torch.log_softmax(logits.float(), dim=-1).cpu()


@attrs.frozen
class DenseReference:
    """A dense reference read from its folder (module docstring).

    Attributes:
        folder: where ``reference.json`` and ``logprobs.npy`` are.
        responses: dense greedy response token ids, per held-out prompt.
        offsets: first row of each response in ``logprobs.npy`` (plus the total at the end).
        meta: the rest of ``reference.json`` (settings, texts, dense answers).
    """

    folder: Path
    responses: list[list[int]]
    offsets: list[int]
    meta: dict[str, Any]

    def logprobs(self, i: int) -> Tensor:
        """Dense log-probabilities along response ``i``, ``(len(response), vocab)`` float32."""
        rows = np.load(self.folder / "logprobs.npy", mmap_mode="r")[self.offsets[i] : self.offsets[i + 1]]
        return torch.from_numpy(np.array(rows))


def _write_logprobs(model: nn.Module, prompt_ids: list[list[int]], responses: list[list[int]],
                    path: Path, progress: bool) -> list[int]:
    offsets = np.cumsum([0] + [len(r) for r in responses]).tolist()
    rows = None
    pairs = list(zip(prompt_ids, responses, strict=True))
    for i, (prompt, response) in enumerate(progress_bar(pairs, desc="dense reference", enabled=progress)):
        lp = response_logprobs(model, prompt, response)
        if rows is None:
            rows = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                             shape=(offsets[-1], lp.shape[-1]))
        rows[offsets[i] : offsets[i + 1]] = lp.numpy()
    rows.flush()
    return offsets


def build_reference(model: nn.Module, tokenizer: PreTrainedTokenizerBase, config: FidelityConfig,
                    folder: str | Path, *, progress: bool = True) -> DenseReference:
    """Compute the dense reference of ``model`` into ``folder`` (created) and read it back."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fs = fidelity_set(tokenizer, config)
    responses = greedy(model, tokenizer, fs.prompt_ids, config.response_tokens, config, progress,
                       "dense responses")
    offsets = _write_logprobs(model, fs.prompt_ids, responses, folder / "logprobs.npy", progress)
    answers = [decode(tokenizer, r) for r in greedy(model, tokenizer, fs.question_ids, config.answer_tokens,
                                                    config, progress, "dense answers")]
    meta = {
        "reference_version": REFERENCE_VERSION,
        "settings": attrs.asdict(attrs.evolve(config, enabled=True)),
        "responses": responses,
        "offsets": offsets,
        "response_texts": [decode(tokenizer, r) for r in responses],
        "answers": answers,
        "correct": score(answers, fs.questions)["correct"],
    }
    tmp = folder / "reference.json.tmp"
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, folder / "reference.json")
    return load_reference(folder)


def load_reference(folder: str | Path) -> DenseReference | None:
    """The reference in ``folder``, or ``None`` if it is missing, incomplete or of another layout."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "reference.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("reference_version") != REFERENCE_VERSION or not (folder / "logprobs.npy").is_file():
        return None
    return DenseReference(folder=folder, responses=meta.pop("responses"), offsets=meta.pop("offsets"),
                          meta=meta)
