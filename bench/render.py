"""Render stored records as ``RESULTS.md`` (one section per profile) and PNG figures."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import figures, profiles, records

log = logging.getLogger(__name__)

_COLUMNS = (
    "run", "method", "curvature", "structure", "target", "achieved", "shots", "ppl",
    "time (s)", "passes", "algebra", "solver", "LoRA", "eval", "outside passes",
    "excl. load", "peak RSS (MB)", "curvature (MB)",
)


_LEGEND = (
    "Times are seconds: *passes* are the calibration forward/backward passes of the curvature, "
    "*algebra* the factorisations of the curvature, *solver* the costs, threshold and updates. "
    "*outside passes* is the share of a run's total time spent outside calibration, LoRA and "
    "evaluation passes, with model loading counted in the total (*excl. load*: without it). "
    "*ppl* is the test perplexity after pruning."
)


_FIDELITY_LEGEND = (
    "Fidelity (`--fidelity`): *KL to dense* is the mean over the dense model's greedy responses to "
    "the held-out chat prompts of KL(dense || pruned) of the next-token distributions (nats per "
    "token); *greedy match* the share of those tokens where both models' most likely next token "
    "agrees; *questions* the bundled short questions answered correctly (greedy), with the dense "
    "model's count."
)


def _num(x: Any, fmt: str = ".2f") -> str:
    if x is None:
        return "–"
    try:
        return format(float(x), fmt)
    except (TypeError, ValueError):
        return str(x)


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * float(x):.0f}%"


def _first_line(text: Any) -> str:
    lines = str(text or "").splitlines()
    return lines[0] if lines else ""


def _has_real(recs: Sequence[dict[str, Any]]) -> bool:
    """Whether any record has a real (compact-export) size: the tables then show it."""
    return any(r.get("real_size") is not None for r in recs)


def _real_cells(record: dict[str, Any]) -> list[str]:
    params = record.get("real_parameters")
    return [_num(record.get("real_size"), ".4f"), "–" if params is None else f"{int(params):,}"]


def row(record: dict[str, Any], real: bool = False) -> list[str]:
    """Table cells of one record (failed runs show the error in the ppl column)."""
    seconds = record.get("seconds") or {}
    ok = record.get("status") == "ok"
    run_id = record["run_id"] + ("" if ok else " (failed)")
    cells = [
        run_id, figures.label(record, options=False), record.get("curvature") or "–", structure_label(record),
        _num(record["target_size"], "g"), _num(record.get("achieved_size"), ".4f"),
        *(_real_cells(record) if real else []), str(record.get("shots")),
    ]
    if not ok:
        message = _first_line(record.get("error"))[:80].replace("|", "\\|")
        return cells + [message] + ["–"] * (len(_columns(real)) - len(cells) - 1)
    return cells + [
        _num(record.get("ppl_after")),
        _num(seconds.get("total"), ".0f"),
        _num(seconds.get("passes"), ".0f"),
        _num(seconds.get("algebra"), ".0f"),
        _num(seconds.get("solver"), ".0f"),
        _num(seconds.get("lora"), ".0f"),
        _num(seconds.get("eval"), ".0f"),
        _pct(record.get("outside_passes_ratio")),
        _pct(records.outside_passes_ratio(seconds, exclude_load=True) if seconds else None),
        _num(record.get("peak_rss_mb"), ".0f"),
        _num(record.get("curvature_mb"), ".0f"),
    ]


def _columns(real: bool, columns: Sequence[str] = _COLUMNS) -> tuple[str, ...]:
    """The columns, with ``real size`` and ``real params`` after ``achieved`` when ``real``."""
    if not real:
        return tuple(columns)
    i = list(columns).index("achieved") + 1
    return (*columns[:i], "real size", "real params", *columns[i:])


def table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of records, one row each."""
    real = _has_real(rows)
    columns = _columns(real)
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if i < 4 else "---:" for i in range(len(columns))) + "|"]
    lines += ["| " + " | ".join(row(r, real)) + " |" for r in rows]
    return "\n".join(lines)


#: Columns of the compact table written into the README.
_README_COLUMNS = (
    "method", "structure", "target", "achieved", "shots", "ppl", "total s", "passes s",
    "solver s", "LoRA s", "eval s", "outside passes (excl. load)", "peak RSS MB",
)


def readme_table(recs: Sequence[dict[str, Any]]) -> str:
    """A compact Markdown table of the successful records, for the project README."""
    real = _has_real(recs)
    columns = _columns(real, _README_COLUMNS)
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if i < 2 else "---:" for i in range(len(columns))) + "|"]
    for r in recs:
        if r.get("status") != "ok":
            continue
        seconds = r.get("seconds") or {}
        ppl = r.get("ppl_after")
        lines.append("| " + " | ".join([
            figures.label(r, options=False), structure_label(r), _num(r["target_size"], "g"),
            _num(r.get("achieved_size"), ".4f"), *(_real_cells(r) if real else []), str(r.get("shots")),
            _num(ppl, ".2f" if ppl is None or ppl < 1e4 else ".3g"),
            _num(seconds.get("total"), ".0f"), _num(seconds.get("passes"), ".0f"),
            _num(seconds.get("solver"), ".0f"),
            _num(seconds.get("lora"), ".0f") if r.get("lora") else "–",
            _num(seconds.get("eval"), ".0f"),
            _pct(records.outside_passes_ratio(seconds, exclude_load=True) if seconds else None),
            _num(r.get("peak_rss_mb"), ".0f"),
        ]) + " |")
    return "\n".join(lines)


_FIDELITY_COLUMNS = ("method", "structure", "target", "calibration", "ppl", "KL to dense",
                     "greedy match", "questions", "total s")


def calibration_label(record: dict[str, Any]) -> str:
    """The calibration of a run: ``wikitext2``, ``chat``, ``wikitext2:0.5,chat:0.5``..."""
    return (record.get("calibration") or {}).get("data") or "wikitext2"


def has_fidelity(recs: Sequence[dict[str, Any]]) -> bool:
    """Whether any successful record has fidelity results."""
    return any(r.get("status") == "ok" and r.get("fidelity") for r in recs)


def fidelity_table(recs: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of perplexity and fidelity (KL, greedy match, questions) per run."""
    lines = ["| " + " | ".join(_FIDELITY_COLUMNS) + " |",
             "|" + "|".join("---" if i < 4 else "---:" for i in range(len(_FIDELITY_COLUMNS))) + "|"]
    for r in recs:
        if r.get("status") != "ok":
            continue
        f = r.get("fidelity") or {}
        n = f.get("questions")
        questions = "–"
        if n and f.get("question_accuracy") is not None:
            questions = f"{round(f['question_accuracy'] * n)}/{n}"
            if f.get("dense_question_accuracy") is not None:
                questions += f" (dense {round(f['dense_question_accuracy'] * n)})"
        match = f.get("match_rate")
        lines.append("| " + " | ".join([
            figures.label(r, options=False), structure_label(r), _num(r["target_size"], "g"), f"`{calibration_label(r)}`",
            _num(r.get("ppl_after")), _num(f.get("kl"), ".3f"),
            "–" if match is None else f"{100 * match:.1f}%", questions,
            _num((r.get("seconds") or {}).get("total"), ".0f"),
        ]) + " |")
    return "\n".join(lines)


#: Columns of the README table of the ``ablations`` profile: what changed, and its cost.
_ABLATION_COLUMNS = (
    "run", "curvature", "structure", "target", "shots", "calibration", "damping g/a", "ppl",
    "curvature passes / shot", "total s", "passes s", "solver s", "peak RSS MB",
)


def _passes_per_shot(record: dict[str, Any]) -> float | None:
    counts = [s["curvature_passes"] for s in record.get("shot_log") or []
              if s.get("curvature_passes") is not None]
    return sum(counts) / len(counts) if counts else None


def _curvature(record: dict[str, Any]) -> str:
    config = record.get("config") or {}
    options = config.get("curvature_options") or {}
    name = record.get("curvature") or "–"
    return name + "".join(f", {k} {v}" for k, v in sorted(options.items()))


def structure_label(record: dict[str, Any]) -> str:
    """A run's structure with its options, e.g. ``dims (cost readers)``."""
    return record["structure"] + figures.options_text(record)


def ablation_table(recs: Sequence[dict[str, Any]]) -> str:
    """The README table of the ``ablations`` profile: one row per successful run."""
    lines = ["| " + " | ".join(_ABLATION_COLUMNS) + " |",
             "|" + "|".join("---" if i < 3 else "---:" for i in range(len(_ABLATION_COLUMNS))) + "|"]
    for r in recs:
        if r.get("status") != "ok":
            continue
        seconds, damping, cal = r.get("seconds") or {}, r.get("damping") or {}, r.get("calibration") or {}
        lines.append("| " + " | ".join([
            r["run_id"], _curvature(r), structure_label(r), _num(r["target_size"], "g"), str(r.get("shots")),
            f"{cal.get('nsamples')} × {cal.get('seqlen')}",
            f"{_num(damping.get('g'), 'g')} / {_num(damping.get('a'), 'g')}",
            _num(r.get("ppl_after")), _num(_passes_per_shot(r), ".1f"),
            _num(seconds.get("total"), ".0f"), _num(seconds.get("passes"), ".0f"),
            _num(seconds.get("solver"), ".0f"), _num(r.get("peak_rss_mb"), ".0f"),
        ]) + " |")
    return "\n".join(lines)


#: Profiles whose README block has its own table (default :func:`fidelity_table` for
#: records with fidelity results, else :func:`readme_table`).
_README_TABLES = {"ablations": ablation_table}
#: Figures drawn per profile (default: all); one setting of one run changes per ablation.
_PROFILE_FIGURES = {"ablations": ("ppl per shot",)}


def readme_markers(profile: str) -> tuple[str, str]:
    """The comment lines that delimit a profile's generated table in a README."""
    return f"<!-- bench:{profile}:start -->", f"<!-- bench:{profile}:end -->"


def readme_profiles(text: str) -> list[str]:
    """Profiles that have a ``<!-- bench:PROFILE:start -->`` block in ``text``."""
    return re.findall(r"<!-- bench:([\w-]+):start -->", text)


def update_readme(readme: str | Path, results_dir: str | Path | None = None,
                  profile_names: Sequence[str] | None = None,
                  figure_paths: dict[str, dict[str, Path]] | None = None) -> bool:
    """Rewrite the generated blocks of ``readme`` with each profile's table and figures.

    A block is the text between ``<!-- bench:PROFILE:start -->`` and
    ``<!-- bench:PROFILE:end -->``; everything outside the blocks is left as it is.

    Args:
        readme: the Markdown file.
        results_dir: folder with ``runs/*.json`` (default ``bench/results``).
        profile_names: blocks to rewrite (default: every block found).
        figure_paths: per profile, the figures :func:`render` just wrote; profiles not in
            it get their figures drawn here.

    Returns:
        Whether the file changed.

    Raises:
        ValueError: a requested block is missing, or a block has no end marker.
    """
    from bench.runner import DEFAULT_RESULTS

    readme = Path(readme)
    results_dir = Path(results_dir or DEFAULT_RESULTS)
    text = original = readme.read_text()
    names = list(profile_names) if profile_names is not None else readme_profiles(text)
    all_records = records.load_all(results_dir)
    base = readme.resolve().parent
    for profile in names:
        start, end = readme_markers(profile)
        i, j = text.find(start), text.find(end)
        if i < 0 or j < i:
            raise ValueError(f"{readme} has no '{start}' ... '{end}' block")
        recs = order(records.latest(all_records, profile), profile)
        figs = []
        paths = (figure_paths or {}).get(profile)
        if paths is None:
            paths = profile_figures(profile, recs, results_dir / "figures")
        for kind, path in paths.items():
            path = path.resolve()
            rel = path.relative_to(base) if path.is_relative_to(base) else path
            figs.append(f"![{profile}: {kind}]({rel.as_posix()})")
        table_fn = _README_TABLES.get(profile, fidelity_table if has_fidelity(recs) else readme_table)
        block = "\n".join([start, "", table_fn(recs), "", *figs, "", end])
        text = text[:i] + block + text[j + len(end):]
    readme.write_text(text)
    return text != original


def order(recs: Sequence[dict[str, Any]], profile: str) -> list[dict[str, Any]]:
    """Records in the order of the profile's runs (unknown ids last, as found)."""
    try:
        ids = [r["id"] for r in profiles.get(profile).runs]
    except KeyError:
        ids = []
    rank = {run_id: i for i, run_id in enumerate(ids)}
    return sorted(recs, key=lambda r: rank.get(r["run_id"], len(ids)))


def _first(recs: Sequence[dict[str, Any]], getter) -> Any:
    for r in recs:
        try:
            value = getter(r)
        except (KeyError, TypeError, AttributeError):
            continue
        if value is not None:
            return value
    return None


def settings_text(recs: Sequence[dict[str, Any]]) -> str:
    """A paragraph stating model, data, machine and commit of a profile's records."""
    ok = [r for r in recs if r.get("status") == "ok"] or list(recs)
    models = sorted({str(r.get("model")) for r in ok})
    cal = _first(ok, lambda r: r["calibration"])
    ev = _first(ok, lambda r: r["evaluation"])
    machine = _first(ok, lambda r: r["machine"]) or {}
    commits = sorted({(r.get("git") or {}).get("commit") or "unknown" for r in ok})
    dirty = any((r.get("git") or {}).get("dirty") for r in ok)
    torch_version = _first(ok, lambda r: r["versions"]["torch"])
    dense = _first(ok, lambda r: r["ppl_before"])
    model_mb = _first(ok, lambda r: r["model_mb"])
    parts = [f"Model: {', '.join(f'`{m}`' for m in models)}"
             + (f" ({model_mb:.0f} MB of parameters)" if model_mb else "") + "."]
    specs = sorted({calibration_label(r) for r in ok})
    if cal and specs == ["wikitext2"]:
        parts.append(f"Calibration: {cal.get('nsamples')} × {cal.get('seqlen')} tokens of "
                     f"WikiText-2 {cal.get('split') or '?'}.")
    elif cal:
        parts.append(f"Calibration: {cal.get('nsamples')} × {cal.get('seqlen')} tokens of "
                     f"{', '.join(f'`{x}`' for x in specs)} (WikiText-2 from its "
                     f"{cal.get('split') or '?'} split; chat self-generated by the dense model).")
    if ev:
        windows = ev.get("windows")
        parts.append(f"Evaluation: {'all' if windows is None else windows} windows × "
                     f"{ev.get('seqlen')} tokens of WikiText-2 {ev.get('split') or '?'}.")
    if dense is not None:
        parts.append(f"Dense perplexity: {dense:.2f}.")
    if machine:
        accel = machine.get("accelerator")
        parts.append(f"Machine: {machine.get('platform')}, {machine.get('cpu_count')} CPUs "
                     f"({machine.get('torch_threads')} torch threads)"
                     + (f", {accel}" if accel else "") + f", device `{machine.get('device')}`"
                     + (f", torch {torch_version}" if torch_version else "") + ".")
    short = ", ".join(c[:10] for c in commits)
    parts.append(f"Commit: {short}{' (with uncommitted changes)' if dirty else ''}.")
    return " ".join(parts)


def profile_figures(profile: str, recs: Sequence[dict[str, Any]], folder: Path) -> dict[str, Path]:
    """Write the figures of one profile into ``folder``; returns ``{kind: path}``."""
    if profile in profiles.names() and not profiles.get(profile).figures:
        return {}
    draw = {
        "ppl vs size": lambda: figures.ppl_vs_size(recs, folder / f"{profile}-ppl-vs-size.png",
                                                   title=f"{profile}: perplexity against target size"),
        "sparsity": lambda: figures.sparsity(recs, folder / f"{profile}-sparsity.png",
                                             title=f"{profile}: where surgeon removes weights"),
        "ppl vs real size": lambda: figures.ppl_vs_real_size(
            recs, folder / f"{profile}-ppl-vs-real-size.png",
            title=f"{profile}: perplexity against real (compact-export) size"),
        "ppl per shot": lambda: figures.ppl_per_shot(recs, folder / f"{profile}-ppl-per-shot.png",
                                                     title=f"{profile}: perplexity per shot"),
    }
    out = {}
    for kind in _PROFILE_FIGURES.get(profile, tuple(draw)):
        path = draw[kind]()
        if path is not None:
            out[kind] = path
    return out


def section(profile: str, recs: Sequence[dict[str, Any]], figure_paths: dict[str, Path],
            relative_to: Path) -> str:
    """The Markdown section of one profile."""
    lines = [f"## Profile `{profile}`", "", settings_text(recs), "", table(recs), ""]
    if has_fidelity(recs):
        lines += [_FIDELITY_LEGEND, "", fidelity_table(recs), ""]
    for kind, path in figure_paths.items():
        rel = path.relative_to(relative_to) if path.is_relative_to(relative_to) else path
        lines += [f"![{profile}: {kind}]({rel.as_posix()})", ""]
    failed = [r for r in recs if r.get("status") != "ok"]
    if failed:
        lines.append("Failed runs:")
        lines.append("")
        lines += [f"- `{r['run_id']}`: {_first_line(r.get('error'))}" for r in failed]
        lines.append("")
    return "\n".join(lines)


def render(results_dir: str | Path = None, profile_names: Sequence[str] | None = None,
           *, readme: str | Path | None = None) -> Path:
    """Write ``RESULTS.md`` and ``figures/*.png`` from the records in ``results_dir``.

    Args:
        results_dir: folder with ``runs/*.json`` (default ``bench/results``).
        profile_names: profiles to include (default: every profile with records).
        readme: also rewrite this file's generated blocks (:func:`update_readme`), reusing
            the figures drawn here.

    Returns:
        The path of ``RESULTS.md``.
    """
    from bench.runner import DEFAULT_RESULTS

    results_dir = Path(results_dir or DEFAULT_RESULTS)
    all_records = records.load_all(results_dir)
    found = list(dict.fromkeys(r["profile"] for r in all_records))
    known = [p for p in profiles.names() if p in found] + [p for p in found if p not in profiles.names()]
    chosen = [p for p in known if profile_names is None or p in profile_names]
    lines = ["# Benchmark results", "",
             "Generated by `python -m bench render` from the JSON records in `runs/`; do not edit "
             "by hand. Each row is the newest record of a run.", "", _LEGEND, ""]
    drawn: dict[str, dict[str, Path]] = {}
    for profile in chosen:
        recs = order(records.latest(all_records, profile), profile)
        drawn[profile] = profile_figures(profile, recs, results_dir / "figures")
        lines.append(section(profile, recs, drawn[profile], results_dir))
    if not chosen:
        lines.append("No records yet: run `python -m bench run quick`.")
    path = results_dir / "RESULTS.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    log.info("wrote %s", path)
    if readme is not None:
        update_readme(readme, results_dir, figure_paths=drawn)
    return path
