"""The comparison table of several runs: ``compare.json`` rows and ``compare.md``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm_surgeon.util.io import write_json


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """The compare row of one run report."""
    prune_seconds = 0.0
    for shot in report.get("shot_log") or []:
        seconds = shot.get("seconds", {})
        prune_seconds += seconds.get("total", 0.0) - seconds.get("eval", 0.0)
    return {
        "status": "ok",
        "shots": report.get("shots"),
        "ppl_before": report.get("ppl_before"),
        "ppl": report.get("ppl_after"),
        "achieved_size": report.get("achieved_size"),
        "prune_seconds": prune_seconds,
        "peak_rss_mb": report.get("peak_rss_mb"),
        "seconds_total": report.get("seconds_total"),
    }


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def render_markdown(result: dict[str, Any]) -> str:
    """``compare.md``: the settings and one table row per combination."""
    s = result["settings"]
    lines = [
        f"# Comparison on `{result['model']}`",
        "",
        f"Calibration: {s['calibration']['nsamples']} × {s['calibration']['seqlen']} tokens "
        f"({s['calibration']['data'].get('dataset', 'wikitext2')} {s['calibration']['data']['split']}, "
        f"seed {s['calibration']['seed']}); "
        f"evaluation: {s['evaluation']['windows'] or 'all'} windows of {s['evaluation']['seqlen']} "
        f"({s['evaluation']['data']['split']}); device {s['device']}, {s['dtype']}.",
        "",
        f"Dense perplexity: {_fmt(result.get('dense_ppl'), '.3f')}",
        "",
        *[f"{section.title()} data: {source}" for section, source in (result.get("data_sources") or {}).items()
          if source],
        "",
        "| method | structure | target size | shots | achieved size | perplexity | pruning s | peak RSS MiB | status |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["runs"]:
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r.get('error', '')}"
        lines.append(
            f"| {r['method']} | {r['structure']} | {r['target_size']:.4g} | {r.get('shots') or '–'} | "
            f"{_fmt(r.get('achieved_size'), '.4f')} | {_fmt(r.get('ppl'), '.3f')} | "
            f"{_fmt(r.get('prune_seconds'), '.1f')} | {_fmt(r.get('peak_rss_mb'), '.0f')} | "
            f"{status.replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"


def write_comparison(out: Path, result: dict[str, Any]) -> None:
    """Write ``compare.json`` and ``compare.md`` into ``out`` (each atomically)."""

    write_json(out / "compare.json", result)
    tmp = out / ".compare.md.tmp"
    tmp.write_text(render_markdown(result), encoding="utf-8")
    tmp.replace(out / "compare.md")
