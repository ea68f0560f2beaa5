"""Short questions with reference answers, scored from a model's reply.

A question record is ``{"id", "question", "answers": [...], "match": "contains"|"exact"}``
(the bundled set: ``llm_surgeon/data/chat/questions.jsonl``, 80 questions). Scoring:

* ``contains``: some answer occurs in the reply, ignoring case. An answer that starts or
  ends with a digit must not touch another digit there, so ``12`` does not match
  ``120`` or ``112``.
* ``exact``: the reply equals an answer after lowercasing and stripping surrounding
  whitespace, quotes and final punctuation (``"Ice."`` -> ``ice``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs

from llm_surgeon.data.conversations import QUESTIONS, bundled, read_jsonl
from llm_surgeon.errors import ConfigError

MATCHES = ("contains", "exact")
_STRIP = " \t\n\r\"'`“”‘’.,;:!?"


@attrs.frozen
class Question:
    """One question, its accepted answers and how they are matched."""

    id: str
    question: str
    answers: tuple[str, ...]
    match: str = "contains"


def load_questions(source: str | Path | None = None, limit: int | None = None) -> list[Question]:
    """The questions of a JSONL file (``None``: the bundled set), the first ``limit`` if given.

    Raises:
        ConfigError: a record without a question or answers, or an unknown ``match``.
    """
    rows = read_jsonl(bundled(QUESTIONS) if source is None else source)
    questions = []
    for n, row in enumerate(rows, 1):
        answers = row.get("answers")
        match = row.get("match", "contains")
        if not isinstance(row.get("question"), str) or not isinstance(answers, list) or not answers \
                or not all(isinstance(a, str) and a for a in answers):
            raise ConfigError(f"questions record {n}: needs a 'question' and non-empty 'answers'")
        if match not in MATCHES:
            raise ConfigError(f"questions record {n}: match must be one of {MATCHES}, got {match!r}")
        questions.append(Question(str(row.get("id", n)), row["question"], tuple(answers), match))
    return questions[:limit]


def _contains(reply: str, answer: str) -> bool:
    pattern = re.escape(answer.lower())
    if answer[0].isdigit():
        pattern = r"(?<!\d)" + pattern
    if answer[-1].isdigit():
        pattern += r"(?!\d)"
    return re.search(pattern, reply.lower()) is not None


def is_correct(reply: str, question: Question) -> bool:
    """Whether ``reply`` answers ``question`` (module docstring for the rules)."""
    if question.match == "exact":
        return reply.strip(_STRIP).lower() in {a.strip(_STRIP).lower() for a in question.answers}
    return any(_contains(reply, a) for a in question.answers)


def score(replies: list[str], questions: list[Question]) -> dict[str, Any]:
    """``correct`` (per question), ``accuracy`` and ``n``."""
    correct = [is_correct(r, q) for r, q in zip(replies, questions, strict=True)]
    return {"correct": correct, "accuracy": sum(correct) / len(correct) if correct else None,
            "n": len(correct)}
