"""Text domains that ship with the interpreter or the OS, split by a hash of each file's path.

Two domains join WikiText-2 for task-specific compression (calibrate on one domain,
evaluate on all):

* ``python-stdlib``: the running interpreter's standard-library ``.py`` files
  (:mod:`llm_surgeon.data.stdlib`; PSF License).
* ``manpages-de``: German manual pages of the Debian package ``manpages-de``
  (:mod:`llm_surgeon.data.manpages`; GPL-3+), fetched once with
  ``llm-surgeon data fetch manpages-de``.

A domain has two parts. A file belongs to the evaluation part when
``int(sha256(key)[:8], 16) % 5 == 0`` for its POSIX path ``key`` relative to the
domain's root (about one file in five), and to the calibration part otherwise, so the
split depends neither on listing order nor on the machine, and no file is in both. The
splits ``train`` and ``validation`` read the calibration part, ``test`` the evaluation part.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

#: One file in this many (by path hash) is in the evaluation part.
EVAL_MODULUS = 5
#: The part each canonical split reads.
PART_OF_SPLIT = {"train": "calib", "validation": "calib", "test": "eval"}
#: Licence of each domain's text.
LICENCES = {"python-stdlib": "PSF License (the interpreter's own source)",
            "manpages-de": "GPL-3+ (Debian manpages-de, upstream manpages-l10n)"}
DOMAINS = tuple(LICENCES)


def part_of(key: str) -> str:
    """``"eval"`` or ``"calib"`` for a file's POSIX path relative to its domain's root."""
    value = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16)
    return "eval" if value % EVAL_MODULUS == 0 else "calib"


def digest(text: str) -> str:
    """First 16 hex digits of the SHA-256 of ``text`` (UTF-8): identifies a part's text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def check_available(name: str) -> None:
    """Raise the loader's :class:`ConfigError` now if a domain's files are missing (no reading)."""
    if name == "manpages-de":
        from llm_surgeon.data.manpages import check_fetched

        check_fetched()


def _loader(name: str) -> Callable[[str], tuple[str, str]]:
    if name == "python-stdlib":
        from llm_surgeon.data.stdlib import load_part
    else:
        from llm_surgeon.data.manpages import load_part
    return load_part


def load_domain(name: str, split: str) -> tuple[str, str]:
    """``(text, source)`` of a domain's part for a canonical split.

    Args:
        name: a name in :data:`DOMAINS`.
        split: ``train``, ``validation`` (both the calibration part) or ``test``.

    Returns:
        The part's text and a description of its source (root, version, file count,
        :func:`digest` of the text).

    Raises:
        ConfigError: the domain's files are missing (man pages not fetched yet).
    """
    return _loader(name)(PART_OF_SPLIT[split])
