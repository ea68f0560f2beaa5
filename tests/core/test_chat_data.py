"""The bundled chat data, question scoring and calibration mixtures (no model needed)."""

from __future__ import annotations

import collections
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_surgeon.data.conversations import (
    HELDOUT_PROMPTS,
    SEED_PROMPTS,
    bundled,
    load_conversations,
    read_jsonl,
)
from llm_surgeon.data.mixture import Source, parse_sources, text_dataset, uses_chat, window_counts
from llm_surgeon.data.questions import Question, is_correct, load_questions, score
from llm_surgeon.errors import ConfigError


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def test_bundled_prompts_are_single_user_turns_in_14_categories():
    for name, count, prefix in ((SEED_PROMPTS, 320, "p"), (HELDOUT_PROMPTS, 64, "h")):
        rows = read_jsonl(bundled(name))
        assert len(rows) == count and len({r["id"] for r in rows}) == count
        assert all(r["id"].startswith(prefix) for r in rows)
        assert len(collections.Counter(r["category"] for r in rows)) == 14
        prompts = load_conversations(bundled(name), prompts=True)
        assert all(len(p) == 1 and p[0]["role"] == "user" and p[0]["content"].strip() for p in prompts)
        assert len({_words(p[0]["content"]) for p in prompts}) == count  # no duplicates


def test_heldout_prompts_are_disjoint_from_the_seed_prompts():
    seed = {_words(p[0]["content"]) for p in load_conversations(bundled(SEED_PROMPTS))}
    held = {_words(p[0]["content"]) for p in load_conversations(bundled(HELDOUT_PROMPTS))}
    assert not seed & held


def test_bundled_questions_never_contain_their_answers():
    questions = load_questions()
    assert len(questions) == 80 and len({q.id for q in questions}) == 80
    assert collections.Counter(q.match for q in questions) == {"contains": 77, "exact": 3}
    for q in questions:
        assert not is_correct(q.question, q), q.id  # echoing the question scores nothing
        assert all(is_correct(f"It is {a}.", q) for a in q.answers if q.match == "contains")
    assert load_questions(limit=5) == questions[:5]


def test_contains_matches_numbers_on_digit_boundaries():
    twelve = Question("q", "7 plus 5?", ("12", "twelve"))
    assert is_correct("The answer is 12.", twelve) and is_correct("Twelve!", twelve)
    assert is_correct("7+5=12", twelve)
    assert not is_correct("It is 120.", twelve) and not is_correct("112", twelve)
    assert is_correct("paris", Question("q", "capital?", ("Paris",)))


def test_exact_match_strips_quotes_and_final_punctuation():
    ice = Question("q", "frozen water?", ("ice",), match="exact")
    assert is_correct(' "Ice." ', ice) and is_correct("ICE!", ice)
    assert not is_correct("nice", ice) and not is_correct("It is ice.", ice)
    assert score(["ice", "nice"], [ice, ice]) == {"correct": [True, False], "accuracy": 0.5, "n": 2}


def test_malformed_chat_files_name_the_record(tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n[1]\n")
    with pytest.raises(ConfigError, match="chats.jsonl:2: expected a JSON object"):
        load_conversations(path)
    path.write_text(json.dumps({"messages": [{"role": "user"}]}) + "\n")
    with pytest.raises(ConfigError, match="record 1: every message needs"):
        load_conversations(path)
    path.write_text(json.dumps({"messages": [{"role": "assistant", "content": "x"}]}) + "\n")
    assert load_conversations(path) == [[{"role": "assistant", "content": "x"}]]
    with pytest.raises(ConfigError, match="must end with a user message"):
        load_conversations(path, prompts=True)
    with pytest.raises(ConfigError, match="cannot read"):
        load_conversations(tmp_path / "missing.jsonl")


def test_parse_sources():
    assert parse_sources("wikitext2") == (Source("wikitext2", 1.0),)
    assert parse_sources("chat") == (Source("chat", 1.0),)
    assert parse_sources("wikitext-2:0.25, chat:0.75") == (Source("wikitext2", 0.25), Source("chat", 0.75))
    assert text_dataset("wikitext2:0.5,chat:0.5") == "wikitext2" and text_dataset("chat") is None
    assert uses_chat("text:0.5,chat:0.5") and not uses_chat("wikitext2")
    for spec, message in (("wikitext2:0.5,chat:0.4", "sum to 0.9"), ("wikitext2,chat:0.5", "give every"),
                          ("chat:0.5,chat:0.5", "twice"), ("wikitext2:0.5,text:0.5", "one text dataset"),
                          ("chat:x", "not a number"), ("chat:1.5", r"in \(0, 1\]"), ("chatt", "did you mean"),
                          ("", "empty")):
        with pytest.raises(ConfigError, match=message):
            parse_sources(spec)


@given(st.lists(st.integers(1, 20), min_size=1, max_size=4), st.integers(1, 200))
def test_window_counts_add_up_and_stay_within_one_of_the_share(weights, nsamples):
    total = sum(weights)
    sources = [Source(f"s{i}", w / total) for i, w in enumerate(weights)]
    try:
        counts = window_counts(sources, nsamples)
    except ConfigError as exc:
        assert "gets no window" in str(exc)
        assert any(s.fraction * nsamples < 1 for s in sources)
        return
    assert sum(counts) == nsamples
    assert all(abs(c - s.fraction * nsamples) < 1 for c, s in zip(counts, sources, strict=True))


def test_window_counts_of_exact_shares():
    assert window_counts(parse_sources("wikitext2:0.5,chat:0.5"), 32) == [16, 16]
    assert window_counts(parse_sources("wikitext2:0.29,chat:0.71"), 100) == [29, 71]
    assert window_counts(parse_sources("wikitext2:0.5,chat:0.5"), 5) == [3, 2]
