"""``llm-surgeon report``: a Markdown report of one or several runs, with their figures.

Inputs are run output folders (``report.json``), comparison folders (``compare.json``;
each of its runs is included, and its ``domains.json`` matrices when present), or JSON
files holding a run report or a bench record. The report folder gets ``report.md`` and
``figures/``: the comparison figures of all runs (kept per layer depth and per module
role; perplexity per shot) and each run's own figures
(:mod:`llm_surgeon.analysis.run_figures`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from llm_surgeon.analysis.comparison_figures import ppl_per_shot_comparison, sparsity_comparison
from llm_surgeon.analysis.domain_figure import save_domain_figure
from llm_surgeon.analysis.run_figures import run_figures
from llm_surgeon.errors import ConfigError


@attrs.frozen
class Run:
    """One run of a report: a short unique name, its report, where it was read from."""

    name: str
    report: dict[str, Any]
    source: Path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {exc}") from None


def _is_run(data: dict[str, Any]) -> bool:
    return "method" in data and "structure" in data and "target_size" in data


def _run_report(folder: Path, row: dict[str, Any]) -> Path | None:
    """A comparison row's ``report.json``: the run's folder under ``folder/runs/`` (where
    ``compare`` puts it, so a moved or copied comparison still finds it), else the recorded path."""
    if not row.get("report"):
        return None
    recorded = Path(row["report"])
    return next((p for p in (folder / "runs" / recorded.parent.name / "report.json", recorded)
                 if p.is_file()), None)


def load_inputs(paths: Sequence[str | Path]) -> tuple[list[Run], list[dict[str, Any]]]:
    """The runs named by ``paths`` and the ``domains.json`` contents found with them.

    Raises:
        ConfigError: a path that is none of a run folder, a comparison folder or a run JSON.
    """
    runs: list[Run] = []
    domains: list[dict[str, Any]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and (path / "report.json").is_file():
            runs.append(Run(path.name, _read_json(path / "report.json"), path))
        elif path.is_dir() and (path / "compare.json").is_file():
            for row in _read_json(path / "compare.json")["runs"]:
                if (report_path := _run_report(path, row)) is not None:
                    runs.append(Run(report_path.parent.name, _read_json(report_path), report_path.parent))
            if (path / "domains.json").is_file():
                domains.append(_read_json(path / "domains.json"))
        elif path.is_file() and _is_run(data := _read_json(path)):
            runs.append(Run(str(data.get("run_id") or path.stem), data, path))
        else:
            raise ConfigError(f"{str(path)!r} is not a run folder (report.json), a comparison "
                              "folder (compare.json) or a run report / bench record JSON file")
    if not runs:
        raise ConfigError("no runs to report on")
    return _unique(runs), domains


def _unique(runs: list[Run]) -> list[Run]:
    seen: dict[str, int] = {}
    out = []
    for run in runs:
        count = seen.get(run.name, 0)
        seen[run.name] = count + 1
        out.append(run if count == 0 else attrs.evolve(run, name=f"{run.name}-{count + 1}"))
    return out


def _num(value: Any, spec: str) -> str:
    return "–" if value is None else format(float(value), spec)


def _ppl(value: Any) -> str:
    return _num(value, ".2f" if value is None or float(value) < 1e4 else ".3g")


def _seconds(report: dict[str, Any]) -> float | None:
    total = report.get("seconds_total")
    return total if total is not None else (report.get("seconds") or {}).get("total")


def _kept(report: dict[str, Any]) -> str:
    modules = report.get("modules") or []
    if not modules:
        return "–"
    kept = sum(int(m["remaining"]) for m in modules)
    total = sum(int(m["parameters"]) for m in modules)
    return f"{kept / 1e6:.2f}M / {total / 1e6:.2f}M"


def table(runs: Sequence[Run]) -> list[str]:
    """The comparison table: one row per run."""
    lines = ["| run | method | curvature | structure | target | achieved | weights kept | shots | "
             "ppl before | ppl after | time s | peak RSS MB |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        r = run.report
        lines.append(
            f"| {run.name} | {r['method']} | {r.get('curvature') or '–'} | {r['structure']} | "
            f"{_num(r['target_size'], 'g')} | {_num(r.get('achieved_size'), '.4f')} | {_kept(r)} | "
            f"{r.get('shots') or '–'} | {_ppl(r.get('ppl_before'))} | "
            f"{_ppl(r.get('ppl_after'))} | {_num(_seconds(r), '.0f')} | "
            f"{_num(r.get('peak_rss_mb'), '.0f')} |")
    return lines


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _image(title: str, path: Path, out: Path) -> str:
    return f"![{title}]({path.relative_to(out).as_posix()})"


def _domain_sections(domains: list[dict[str, Any]], out: Path) -> list[str]:
    from llm_surgeon.run.cross_domain import render_markdown

    lines: list[str] = []
    for i, d in enumerate(domains):
        figure = save_domain_figure(d, out / "figures" / f"domains-{i + 1}.png")
        body = render_markdown(d).split("\n", 1)[1]  # without its title
        lines += ["## Task-specific compression", body.strip(), ""]
        if figure:
            lines += [_image("cross-perplexity and mask equivalence", figure, out), ""]
    return lines


def write_report(paths: Sequence[str | Path], out: str | Path, *, title: str = "Pruning report") -> Path:
    """Write ``out/report.md`` and ``out/figures/`` for the runs named by ``paths``.

    Returns:
        The path of ``report.md``.
    """
    runs, domains = load_inputs(paths)
    out = Path(out)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", "", f"{len(runs)} run(s). Sizes are fractions of the prunable weights "
             "kept; *time* is the run's total seconds, *peak RSS* its process's peak memory.", ""]
    lines += table(runs) + [""]
    reports = [r.report for r in runs]
    names = [r.name for r in runs]
    compared = [("kept per layer and role", sparsity_comparison(reports, figures / "sparsity.png", labels=names)),
                ("perplexity per shot", ppl_per_shot_comparison(reports, figures / "ppl-per-shot.png",
                                                                labels=names))]
    if len(runs) > 1 and any(path for _, path in compared):
        lines += ["## Comparison", ""] + [_image(t, p, out) for t, p in compared if p] + [""]
    lines += _domain_sections(domains, out)
    for run in runs:
        lines += [f"## {run.name}", "", f"Source: `{run.source}`", ""]
        for path in run_figures(figures / _slug(run.name), run.report):
            lines.append(_image(f"{run.name}: {path.stem}", path, out))
        lines.append("")
    report = out / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return report
