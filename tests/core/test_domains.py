"""Offline text domains: the standard library and German man pages, split by path hash."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from llm_surgeon.cli import main
from llm_surgeon.data import DataConfig, load_text, manpages, stdlib
from llm_surgeon.data.domains import EVAL_MODULUS, digest, part_of
from llm_surgeon.errors import ConfigError

needs_man = pytest.mark.skipif(shutil.which("man") is None or shutil.which("dpkg-deb") is None,
                               reason="needs man and dpkg-deb")


def test_part_of_is_the_documented_hash_rule():
    keys = [f"pkg/mod{i}.py" for i in range(400)]
    for key in keys:
        value = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
        assert part_of(key) == ("eval" if value % EVAL_MODULUS == 0 else "calib")
    share = sum(part_of(k) == "eval" for k in keys) / len(keys)
    assert 0.12 < share < 0.28  # about one in five


def _fake_stdlib(root: Path) -> Path:
    files = {
        "os.py": "import sys\n", "json/__init__.py": "x = 1\n", "json/decoder.py": "y = 2\n",
        "test/test_os.py": "skip\n", "json/tests/t.py": "skip\n", "test_x.py": "skip\n",
        "site-packages/pkg.py": "skip\n", "__pycache__/os.py": "skip\n",
        "config-3.11/m.py": "skip\n", "pydoc_data/topics.py": "skip\n", "idlelib/idle_test/a.py": "skip\n",
        "README.txt": "not python\n",
    }
    files.update({f"lib/m{i}.py": f"value = {i}\n" for i in range(30)})
    for key, text in files.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_text(text)
    (root / "latin1.py").write_bytes(b"s = '\xe9'\n")  # not UTF-8
    return root


def test_stdlib_listing_skips_tests_packages_and_generated_files(tmp_path):
    root = _fake_stdlib(tmp_path)
    keys = [k for k, _ in stdlib.source_files(root)]
    assert keys == sorted(keys)
    assert {"os.py", "json/__init__.py", "json/decoder.py"} <= set(keys)
    assert not [k for k in keys if "test" in k or "site-packages" in k or "config-" in k
                or "pycache" in k or k.endswith(".txt") or k == "pydoc_data/topics.py"]
    calib, n_calib = stdlib.part_text("calib", root)
    evals, n_eval = stdlib.part_text("eval", root)
    assert n_calib + n_eval == len(keys) - 1  # latin1.py is dropped
    assert n_eval > 0 and n_calib > 0
    for key in keys:
        if key != "latin1.py":
            assert (f"# file: {key}\n" in (evals if part_of(key) == "eval" else calib))
            assert (f"# file: {key}\n" not in (calib if part_of(key) == "eval" else evals))
    # Order: sorted keys, a blank line between files.
    headers = [line[len("# file: "):] for line in calib.splitlines() if line.startswith("# file: ")]
    assert headers == sorted(headers)


def test_stdlib_domain_of_this_interpreter_is_split_and_named():
    text, info = load_text(DataConfig(dataset="python-stdlib", split="test"))
    cal, cal_info = load_text(DataConfig(dataset="stdlib", split="validation"))
    assert info["dataset"] == cal_info["dataset"] == "python-stdlib"
    assert len(cal) > 2 * len(text) > 100_000
    assert "Python 3." in info["source"] and f"sha256 {digest(text)}" in info["source"]
    eval_files = {line for line in text.splitlines() if line.startswith("# file: ")}
    calib_files = {line for line in cal.splitlines() if line.startswith("# file: ")}
    assert eval_files and calib_files and not eval_files & calib_files
    train, _ = load_text(DataConfig(dataset="python-stdlib", split="train"))
    assert train == cal


def _roff(title: str, body: str) -> bytes:
    return gzip.compress(f'.TH {title} 1 2024 "t" "t"\n.SH BESCHREIBUNG\n{body}\n'.encode())


def _fake_deb(tmp_path: Path) -> Path:
    """A minimal manpages-de package: pages, an alias symlink, a .so stub, a short page."""
    root = tmp_path / "pkgroot"
    man = root / "usr/share/man/de"
    words = "Dieses Programm zeigt die Dateien eines Verzeichnisses an und sortiert sie."
    for i in range(12):
        (man / "man1").mkdir(parents=True, exist_ok=True)
        (man / f"man1/prog{i}.1.gz").write_bytes(_roff(f"PROG{i}", f"{words} Seite {i}. " * 6))
    (man / "man1/alias.1.gz").symlink_to("prog0.1.gz")
    (man / "man1/stub.1.gz").write_bytes(gzip.compress(b".so man1/prog1.1\n"))
    (man / "man1/short.1.gz").write_bytes(_roff("KURZ", "kurz"))
    (man / "man1/copy.1.gz").write_bytes(_roff("PROG3", f"{words} Seite 3. " * 6))  # same text
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN/control").write_text("Package: manpages-de\nVersion: 0.1-1\nArchitecture: all\n"
                                         "Maintainer: t <t@t>\nDescription: test\n")
    deb = tmp_path / "manpages-de_0.1-1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(root), str(deb)], check=True,
                   capture_output=True)
    return deb


@needs_man
def test_manpages_fetch_from_a_deb_renders_splits_and_caches(tmp_path, monkeypatch):
    deb = _fake_deb(tmp_path)
    cache = tmp_path / "cache"
    monkeypatch.setenv("LLM_SURGEON_DATA", str(cache))
    with pytest.raises(ConfigError, match="llm-surgeon data fetch manpages-de"):
        load_text(DataConfig(dataset="manpages-de", split="test"))
    assert main(["data", "fetch", "manpages-de", "--deb", str(deb), "--no-progress"]) == 0
    manifest = json.loads((cache / "manpages-de/manifest.json").read_text())
    assert manifest["deb"] == deb.name and manifest["licence"] == "GPL-3+"
    counts = {p: manifest["parts"][p]["pages"] for p in ("calib", "eval")}
    # 12 distinct pages: the alias, the .so stub, the short page and the duplicate are dropped.
    assert counts["calib"] + counts["eval"] == 12
    expected_eval = sum(part_of(f"man1/prog{i}.1.gz") == "eval" for i in range(12))
    assert counts["eval"] == expected_eval
    text, info = load_text(DataConfig(dataset="manpages-de", split="test"))
    cal, _ = load_text(DataConfig(dataset="manpages-de", split="validation"))
    assert text.count("Verzeichnisses") == 6 * expected_eval
    assert cal.count("Verzeichnisses") == 6 * (12 - expected_eval)
    assert "\x08" not in cal and "BESCHREIBUNG" in cal
    assert manifest["parts"]["eval"]["sha256"] == digest(text) and deb.name in info["source"]
    # Cached: a second fetch reads the manifest and runs no tool.
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert manpages.fetch() == manifest


def test_manpages_fetch_without_tools_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LLM_SURGEON_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert main(["data", "fetch", "manpages-de"]) == 2
    err = capsys.readouterr().err
    assert "apt-get" in err and "dpkg-deb" in err and "man-db" in err
    assert not (tmp_path / "cache" / "manpages-de").exists()


def test_prune_with_unfetched_manpages_fails_before_loading(tmp_path, monkeypatch, capsys,
                                                            no_model_loading):
    monkeypatch.setenv("LLM_SURGEON_DATA", str(tmp_path / "empty"))
    code = main(["prune", "smollm2-135m", "--data", "manpages-de", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "llm-surgeon data fetch manpages-de" in capsys.readouterr().err


def test_data_list_names_licences(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LLM_SURGEON_DATA", str(tmp_path))
    assert main(["data", "list", "--json"]) == 0
    rows = {r["dataset"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["manpages-de"]["licence"].startswith("GPL-3+")
    assert rows["manpages-de"]["state"].startswith("not fetched")
    assert rows["python-stdlib"]["state"] == "ready"


@pytest.mark.skipif(not os.environ.get("LLM_SURGEON_DATA_REAL"), reason="set LLM_SURGEON_DATA_REAL=1 "
                    "to check the fetched Debian 4.18.1-1 pages against their published digests")
def test_real_manpages_digests():
    manifest = json.loads((manpages.cache_dir() / "manifest.json").read_text())
    if manifest["deb"] != "manpages-de_4.18.1-1_all.deb":
        pytest.skip(f"another package version: {manifest['deb']}")
    assert manifest["parts"]["calib"] == {"pages": 727, "characters": 6621246, "sha256": "b324408e90db62a3"}
    assert manifest["parts"]["eval"] == {"pages": 181, "characters": 1664524, "sha256": "d9f1db7d4481daa1"}
