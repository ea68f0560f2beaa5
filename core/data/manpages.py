"""The ``manpages-de`` domain: German manual pages of Debian's ``manpages-de`` (GPL-3+).

German technical instructions (option lists, imperatives, compound nouns), a language
and register far from WikiText. The package is fetched explicitly, once, by
:func:`fetch` (``llm-surgeon data fetch manpages-de``): ``apt-get download`` (no
installation, no root once the package lists are current), ``dpkg-deb -x`` into the
cache, and every page rendered to plain text with ``man -l``. Loading only reads the
cached parts; when they are missing, the error says how to fetch them.

Pages are ``usr/share/man/de/man*/*.gz``; symlinked aliases and ``.so`` redirect stubs
are skipped. Each page is rendered with ``MANWIDTH=80 man --nj --nh -E UTF-8 -l`` (no
justification or hyphenation, so words stay whole), lines are stripped and blank runs
collapsed. Pages under 200 characters and repeats of an earlier page are dropped. A
part is its pages in sorted key order (``man1/tar.1.gz``...), separated by a blank line.

Cache: ``$LLM_SURGEON_DATA/manpages-de`` (default ``~/.cache/llm-surgeon/data``) holds
``calib.txt``, ``eval.txt`` and ``manifest.json`` (package version, tool versions, page
counts, digests), written atomically.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from llm_surgeon.data.domains import digest, part_of
from llm_surgeon.errors import ConfigError
from llm_surgeon.util.io import atomic_output
from llm_surgeon.util.progress import progress_bar

PACKAGE = "manpages-de"
NAME = "manpages-de"
MIN_CHARS = 200
_TOOLS = {"apt-get": "apt", "dpkg-deb": "dpkg", "man": "man-db (and groff-base)"}


def data_root() -> Path:
    """Root of the dataset cache: ``$LLM_SURGEON_DATA`` or ``~/.cache/llm-surgeon/data``."""
    setting = os.environ.get("LLM_SURGEON_DATA")
    return Path(setting).expanduser() if setting else Path.home() / ".cache" / "llm-surgeon" / "data"


def cache_dir(root: Path | None = None) -> Path:
    """The folder of the rendered parts."""
    return (root or data_root()) / NAME


def _fetch_hint(root: Path | None) -> str:
    flag = f" --cache {root}" if root is not None else ""
    return (f"run `llm-surgeon data fetch {NAME}{flag}` once (it needs apt-get, dpkg-deb and man; "
            "on a slim image: apt-get install -y man-db groff-base)")


def check_fetched(root: Path | None = None) -> None:
    """Raise a :class:`ConfigError` with the fetch command if the parts are not cached."""
    folder = cache_dir(root)
    if not all((folder / name).is_file() for name in ("manifest.json", "calib.txt", "eval.txt")):
        raise ConfigError(f"{NAME} is not in the cache ({folder}): {_fetch_hint(root)}")


def load_part(part: str, root: Path | None = None) -> tuple[str, str]:
    """``(text, source)`` of the ``calib`` or ``eval`` part from the cache.

    Raises:
        ConfigError: the pages have not been fetched into the cache.
    """
    folder = cache_dir(root)
    path = folder / f"{part}.txt"
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        raise ConfigError(f"{NAME} is not in the cache ({folder}): {_fetch_hint(root)}") from None
    info = manifest["parts"][part]
    return text, (f"{folder} (Debian {manifest['deb']}, {part} part: {info['pages']} pages, "
                  f"sha256 {digest(text)})")


def _require_tools(names: tuple[str, ...]) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        packages = ", ".join(_TOOLS[n] for n in missing)
        raise ConfigError(f"fetching {NAME} needs {', '.join(missing)} (Debian packages: {packages})")


def _run(command: list[str], cwd: Path | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, errors="replace")
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        hint = " (try `apt-get update` first)" if command[0] == "apt-get" else ""
        raise ConfigError(f"`{' '.join(command)}` failed{hint}: {' / '.join(tail)}")
    return result.stdout


def download_deb(folder: Path) -> Path:
    """``apt-get download manpages-de`` into ``folder``; the ``.deb`` file."""
    _run(["apt-get", "download", PACKAGE], cwd=folder)
    debs = sorted(folder.glob(f"{PACKAGE}_*.deb"))
    if not debs:
        raise ConfigError(f"apt-get download wrote no {PACKAGE}_*.deb file")
    return debs[-1]


def render_page(page: Path) -> str:
    """Plain text of one gzipped roff page (``man -l``), lines stripped, blank runs collapsed."""
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", LANG="C.UTF-8")
    result = subprocess.run(["man", "--nj", "--nh", "-E", "UTF-8", "-l", str(page)], env=env,
                            capture_output=True, text=True, encoding="utf-8", errors="replace")
    text = re.sub(r".\x08", "", result.stdout)  # overstrike bold/underline, if any
    text = "\n".join(line.strip() for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def page_files(man_root: Path) -> list[tuple[str, Path]]:
    """``(key, path)`` of the real pages below ``usr/share/man/de`` (no aliases, no stubs)."""
    pages = []
    for path in sorted(man_root.rglob("*.gz")):
        if path.is_symlink():
            continue
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
            if f.read(200).lstrip().startswith(".so "):
                continue
        pages.append((path.relative_to(man_root).as_posix(), path))
    return pages


def render_parts(man_root: Path, *, progress: bool = True) -> dict[str, list[str]]:
    """Rendered pages of each part, in key order, without short pages and repeats."""
    pages = page_files(man_root)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        texts = list(progress_bar(pool.map(render_page, [p for _, p in pages]), total=len(pages),
                                  desc=f"rendering {NAME}", enabled=progress))
    parts: dict[str, list[str]] = {"calib": [], "eval": []}
    seen: set[str] = set()
    for (key, _), text in zip(pages, texts, strict=True):
        if len(text) >= MIN_CHARS and text not in seen:
            seen.add(text)
            parts[part_of(key)].append(text)
    return parts


def _tool_version(command: str) -> str:
    try:
        return _run([command, "--version"]).splitlines()[0].strip()
    except (ConfigError, IndexError, OSError):
        return "unknown"


def fetch(root: Path | None = None, *, deb: Path | None = None, progress: bool = True,
          force: bool = False) -> dict[str, Any]:
    """Download (or take ``deb``), unpack, render and cache the two parts; the manifest.

    Args:
        root: dataset cache root (default :func:`data_root`).
        deb: a local ``manpages-de_*.deb`` instead of ``apt-get download``.
        progress: progress bar while rendering.
        force: fetch again although the cache is complete.

    Raises:
        ConfigError: a tool is missing, the download or unpacking failed, or the package
            holds no pages.
    """
    folder = cache_dir(root)
    if (folder / "manifest.json").is_file() and not force:
        return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    _require_tools(("dpkg-deb", "man") if deb else ("apt-get", "dpkg-deb", "man"))
    with tempfile.TemporaryDirectory(prefix=f"{NAME}-") as tmp:
        work = Path(tmp)
        if deb is None:
            deb = download_deb(work)
        elif not deb.is_file():
            raise ConfigError(f"no such .deb file: {deb}")
        _run(["dpkg-deb", "-x", str(deb), str(work / "pkg")])
        man_root = work / "pkg" / "usr" / "share" / "man" / "de"
        if not man_root.is_dir():
            raise ConfigError(f"{deb.name} has no usr/share/man/de pages")
        parts = render_parts(man_root, progress=progress)
        manifest = {"dataset": NAME, "deb": deb.name, "licence": "GPL-3+",
                    "man": _tool_version("man"), "parts": {}}
        with atomic_output(folder, overwrite=True) as out:
            for part, texts in parts.items():
                text = "\n\n".join(texts)
                (out / f"{part}.txt").write_text(text, encoding="utf-8")
                manifest["parts"][part] = {"pages": len(texts), "characters": len(text),
                                           "sha256": digest(text)}
            (out / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest
