"""Task-specific compression: one run per calibration domain, cross-perplexity and mask matrices."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from llm_surgeon.cli import main
from llm_surgeon.data import DataConfig, EvalConfig, eval_windows, perplexity
from llm_surgeon.errors import ConfigError
from llm_surgeon.model import load_model
from llm_surgeon.model.masks import load_masks, pack_mask, save_masks, unpack_mask
from llm_surgeon.run.cross_domain import agreement_matrix, domain_lists, mask_agreement

DOMAINS = ["wikitext2", "python-stdlib", "manpages-de"]


def _german(seed: int, lines: int) -> str:
    rng = random.Random(seed)
    words = ["Datei", "Verzeichnis", "anzeigen", "die", "der", "Option", "Befehl", "und", "nicht",
             "Benutzer", "ausgeben", "wird", "mit", "Zeichen", "Standard", "Eingabe"]
    return "\n".join(" ".join(rng.choice(words) for _ in range(12)) + "." for _ in range(lines))


@pytest.fixture
def domain_files(tmp_path, monkeypatch):
    """A small standard library and a fetched man-page cache, so every domain loads fast."""
    root = tmp_path / "stdlib"
    rng = random.Random(0)
    for i in range(60):
        path = root / f"pkg{i % 4}" / f"mod{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "\n".join(f"def f{j}(x):\n    return x * {rng.randint(0, 99)} + {j}\n" for j in range(8))
        path.write_text(f"import os\n\n{body}\n")
    monkeypatch.setattr("llm_surgeon.data.stdlib.stdlib_root", lambda: root)
    cache = tmp_path / "data" / "manpages-de"
    cache.mkdir(parents=True)
    parts = {"calib": _german(1, 300), "eval": _german(2, 300)}
    for part, text in parts.items():
        (cache / f"{part}.txt").write_text(text, encoding="utf-8")
    manifest = {"dataset": "manpages-de", "deb": "manpages-de_test_all.deb", "licence": "GPL-3+",
                "parts": {p: {"pages": 1, "characters": len(t), "sha256": "x"} for p, t in parts.items()}}
    (cache / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("LLM_SURGEON_DATA", str(tmp_path / "data"))
    return root


def test_pack_and_save_masks_round_trip(tmp_path):
    gen = torch.Generator().manual_seed(0)
    masks = {"a": torch.rand(5, 7, generator=gen) > 0.5, "b.c": torch.rand(3, 1, generator=gen) > 0.3}
    assert pack_mask(masks["a"]).dtype == torch.uint8 and pack_mask(masks["a"]).numel() == 5
    assert torch.equal(unpack_mask(pack_mask(masks["a"]), (5, 7)), masks["a"])
    loaded = load_masks(save_masks(masks, tmp_path / "m.safetensors"))
    assert loaded.keys() == masks.keys()
    assert all(torch.equal(loaded[k], masks[k]) for k in masks)
    with pytest.raises(ConfigError, match="no masks file"):
        load_masks(tmp_path / "missing")


def test_mask_agreement_counts_identical_decisions():
    a = {"x": torch.tensor([[True, True], [False, False]]), "y": torch.tensor([[True, False, True]])}
    b = {"x": torch.tensor([[True, False], [False, True]]), "y": torch.tensor([[True, False, False]])}
    assert mask_agreement(a, b) == pytest.approx(4 / 7)  # x: 2 of 4 agree, y: 2 of 3
    matrix = agreement_matrix([a, b, None])
    assert matrix[0][0] == matrix[1][1] == 1.0
    assert matrix[0][1] == matrix[1][0] == pytest.approx(4 / 7)
    assert matrix[2] == [None, None, None] and matrix[0][2] is None
    with pytest.raises(ConfigError, match="different models"):
        mask_agreement(a, {"x": a["x"]})


def test_domain_lists():
    assert domain_lists(None, None, None) == (None, None)
    assert domain_lists(["stdlib", "wikitext"], None, None) == (["python-stdlib", "wikitext2"],) * 2
    assert domain_lists(None, ["manpages-de"], "text") == (["text"], ["manpages-de"])
    with pytest.raises(ConfigError, match="twice"):
        domain_lists(["wikitext2", "wikitext"], None, None)
    with pytest.raises(ConfigError, match="unknown dataset"):
        domain_lists(["python"], None, None)


def test_unfetched_eval_domain_fails_before_any_run(tiny_model_dir, wikitext_dir, tmp_path,
                                                   monkeypatch, capsys, no_model_loading):
    monkeypatch.setenv("LLM_SURGEON_DATA", str(tmp_path / "empty"))
    code = main(["compare", str(tiny_model_dir), "--methods", "magnitude", "--calib-data", "wikitext2",
                 "--eval-data", "wikitext2,manpages-de", "--data-dir", str(wikitext_dir),
                 "--out", str(tmp_path / "o")])
    assert code == 2
    assert "llm-surgeon data fetch manpages-de" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _compare(tiny_model_dir, wikitext_dir, out, method, *extra):
    return main(["compare", str(tiny_model_dir), "--methods", method, "--structures", "row-col",
                 "--target-sizes", "0.75", "--shots", "1", "--data-dir", str(wikitext_dir),
                 "--calib-split", "validation", "--nsamples", "4", "--seqlen", "32",
                 "--eval-windows", "3", "--calib-data", ",".join(DOMAINS), "--out", str(out),
                 "--no-progress", "--in-process", *extra])


def _nonzero_agreement(dir_a: Path, dir_b: Path) -> float:
    """Mask agreement recomputed from the saved pruned weights (zero = removed)."""
    from safetensors.torch import load_file

    wa, wb = load_file(str(dir_a / "model.safetensors")), load_file(str(dir_b / "model.safetensors"))
    masks = load_masks(dir_a)
    same = sum(int(torch.eq(wa[f"{n}.weight"] != 0, wb[f"{n}.weight"] != 0).sum()) for n in masks)
    return same / sum(m.numel() for m in masks.values())


def test_compare_per_calibration_domain(tiny_model_dir, wikitext_dir, tmp_path, domain_files, capsys):
    out = tmp_path / "cmp"
    assert _compare(tiny_model_dir, wikitext_dir, out, "surgeon") == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "it/s" not in captured.err  # --no-progress: no bar, the libraries' included
    domains = json.loads((out / "domains.json").read_text())
    assert domains["calib_data"] == domains["eval_data"] == DOMAINS
    (m,) = domains["matrices"]
    ppl, eq = m["ppl"], m["mask_equivalence"]
    assert len(ppl) == len(eq) == 3 and all(len(row) == 3 for row in ppl + eq)
    runs = {r["calib_data"]: r for r in json.loads((out / "compare.json").read_text())["runs"]}
    for i, name in enumerate(DOMAINS):
        assert eq[i][i] == 1.0
        assert ppl[i][i] == pytest.approx(runs[name]["ppl"])  # the run's own evaluation
        report = json.loads(Path(runs[name]["report"]).read_text())
        assert report["calibration"]["dataset"] == name
        assert (Path(runs[name]["out"]) / "figures" / "kept-per-layer.png").is_file()
        for k in range(3):
            assert eq[i][k] == eq[k][i]
    # Different calibration text gives different masks; the matrix is what the models say.
    assert all(0.5 < eq[i][k] < 1.0 for i in range(3) for k in range(3) if i != k)
    dirs = [Path(runs[n]["out"]) for n in DOMAINS]
    assert eq[0][1] == pytest.approx(_nonzero_agreement(dirs[0], dirs[1]))
    model, tokenizer = load_model(str(dirs[2]))
    windows = eval_windows(tokenizer, EvalConfig(data=DataConfig(dataset="python-stdlib", split="test"),
                                                 seqlen=32, windows=3))
    assert ppl[2][1] == pytest.approx(perplexity(model, windows, progress=False), rel=1e-6)
    dense = domains["dense_ppl"]
    assert set(dense) == set(DOMAINS) and all(v > 1 for v in dense.values())
    assert dense["wikitext2"] == pytest.approx(runs["wikitext2"]["ppl_before"])
    assert (out / "figures" / "domains.png").stat().st_size > 10_000
    assert "| wikitext2 |" in (out / "domains.md").read_text() and "mask" in printed.lower()


def test_calibration_free_method_has_identical_masks(tiny_model_dir, wikitext_dir, tmp_path,
                                                     domain_files):
    out = tmp_path / "cmp"
    assert _compare(tiny_model_dir, wikitext_dir, out, "magnitude", "--eval-data",
                    "manpages-de,wikitext2") == 0
    (m,) = json.loads((out / "domains.json").read_text())["matrices"]
    assert m["mask_equivalence"] == [[1.0] * 3] * 3
    assert len(m["ppl"]) == 3 and all(len(row) == 2 for row in m["ppl"])
    for row in m["ppl"][1:]:  # same masks and no update: the same model on every row
        assert row == pytest.approx(m["ppl"][0])


def test_domain_lists_with_chat():
    assert domain_lists(["chat", "stdlib"], None, None) == (["chat", "python-stdlib"], ["python-stdlib"])
    assert domain_lists(["chat"], None, None) == (["chat"], ["wikitext2"])
    mix = "wikitext2-bundled:0.5,chat:0.5"
    assert domain_lists(None, ["wikitext2"], mix) == ([mix], ["wikitext2"])
    assert domain_lists([mix], None, None) == ([mix], ["wikitext2-bundled"])
    with pytest.raises(ConfigError, match="unknown dataset"):
        domain_lists(["python-stdlib"], ["chat"], None)
