"""Tables of the ``deploy`` benchmark: ``results/DEPLOY.md`` and the README block."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import deploy


def _ratio(value: float, dense: float) -> str:
    return f"{value / dense:.2f}×"


def _size(row: dict[str, Any], record: dict[str, Any]) -> float:
    """Fraction of the prunable weights the variant stores (1 for dense)."""
    if row["kind"] == "dense":
        return 1.0
    if row["kind"] == "compact":
        return record["exports"][row["run"]]["real_size"]
    return record["pruned"][row["run"]]["achieved_size"]


def _ppl(row: dict[str, Any], record: dict[str, Any]) -> str:
    if row["kind"] == "dense":
        pruned = next(iter(record["pruned"].values()), {})
        return f"{pruned['ppl_before']:.2f}" if pruned.get("ppl_before") else "n/a"
    if row["kind"] == "zeroed":
        return f"{record['pruned'][row['run']]['ppl_after']:.2f}"
    eq = record["equivalence"][row["run"]]
    return f"{eq['ppl']:.2f} (Δlogit ≤ {eq['max_abs_dlogit']:.1e})"


def table(record: dict[str, Any]) -> str:
    """One Markdown row per variant; ratios against the dense model."""
    rows = record["variants"]
    dense = next(r for r in rows if r["kind"] == "dense")
    lines = ["| model | stored weights | parameters | safetensors | peak RSS after load | "
             "prefill 512 tokens | decode (batch 1) | perplexity |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        label = "dense" if r["kind"] == "dense" else f"{r['name']} {r['kind']}"
        decode = r["decode_tokens_per_s"]
        lines.append(
            f"| {label} | {_size(r, record):.3f} | {r['parameters'] / 1e6:.1f} M "
            f"({_ratio(r['parameters'], dense['parameters'])}) | "
            f"{r['safetensors_bytes'] / 2**20:.0f} MiB ({_ratio(r['safetensors_bytes'], dense['safetensors_bytes'])}) | "
            f"{r['peak_rss_mb_after_load']:.0f} MiB | "
            f"{r['prefill_s'] * 1e3:.0f} ms ({_ratio(r['prefill_s'], dense['prefill_s'])}) | "
            f"{decode:.1f} tok/s ({_ratio(decode, dense['decode_tokens_per_s'])}) | {_ppl(r, record)} |")
    return "\n".join(lines)


def notes(record: dict[str, Any]) -> str:
    """Settings, machine and load averages of a record, as one paragraph."""
    s, m = record["settings"], record["machine"]
    loads = [r["load_average_after"][0] for r in record["variants"] if r.get("load_average_after")]
    baseline = min(r["rss_mb_before_load"] for r in record["variants"])
    return (f"{s['dense']}, float32, {s['threads']} threads, medians of {s['repeats']} runs; "
            f"prefill: one forward of a 512-token test window; decode: {s['decode_tokens']} greedy "
            f"tokens after that window. Perplexity on {s['windows']} test windows of {s['seqlen']} "
            f"tokens (compact: computed in a fresh process with plain transformers). Peak RSS "
            f"includes about {baseline:.0f} MiB of Python, torch and transformers before loading. "
            f"Machine: {m.get('cpu_count')} CPUs, {m.get('platform')}; 1-minute load average after "
            f"the measurements {min(loads):.1f} to {max(loads):.1f}; recorded {record['finished_at']}, "
            f"commit {str((record.get('git') or {}).get('commit'))[:10]}.")


def render(results_dir: Path, readme: Path | None = None) -> Path | None:
    """Write ``DEPLOY.md`` from the newest record (and the README block); its path."""
    record = deploy.latest(results_dir)
    if record is None:
        return None
    body = table(record) + "\n\n" + notes(record) + "\n"
    path = Path(results_dir) / "DEPLOY.md"
    path.write_text("# Deploy benchmark\n\n" + body)
    if readme is not None:
        start, end = deploy.README_MARKERS
        text = readme.read_text()
        if start not in text or end not in text:
            raise ValueError(f"{readme} has no '{start}' ... '{end}' block")
        head, rest = text.split(start, 1)
        readme.write_text(head + start + "\n\n" + body + "\n" + end + rest.split(end, 1)[1])
    return path
