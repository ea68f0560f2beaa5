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


def _dense(result: dict[str, Any]) -> str:
    """The dense perplexity; per evaluation dataset when the runs evaluate on several."""
    per_data = {r["eval_data"]: r.get("ppl_before") for r in result["runs"]
                if "eval_data" in r and r.get("ppl_before") is not None}
    if len(per_data) < 2:
        return _fmt(result.get("dense_ppl"), ".3f")
    return ", ".join(f"{name} {_fmt(ppl, '.3f')}" for name, ppl in per_data.items())


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
        f"Dense perplexity: {_dense(result)}",
        "",
        *[f"{section.title()} data: {source}" for section, source in (result.get("data_sources") or {}).items()
          if source],
        "",
    ]
    domains = any("calib_data" in r for r in result["runs"])
    extra = ("| calibrated on | evaluated on ", "|---|---") if domains else ("", "")
    lines += [
        f"| method | structure | target size {extra[0]}| shots | achieved size | perplexity | pruning s | "
        "peak RSS MiB | status |",
        f"|---|---|---:{extra[1]}|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["runs"]:
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r.get('error', '')}"
        where = f" {r.get('calib_data')} | {r.get('eval_data')} |" if domains else ""
        lines.append(
            f"| {r['method']} | {r['structure']} | {r['target_size']:.4g} |{where} {r.get('shots') or '–'} | "
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
