"""Task-specific compression: prune once per calibration domain, evaluate on every domain.

``llm-surgeon compare ... --calib-data A,B,C --eval-data A,B,C`` runs each method,
structure and size once per calibration domain (each run keeps its pruned model and its
``masks.safetensors``). This module then fills, per method / structure / size:

* the cross-perplexity matrix ``ppl[i][j]``: calibrated on domain ``i``, evaluated on
  domain ``j`` (the dense model's perplexity per evaluation domain beside it);
* the mask-equivalence matrix ``eq[i][k]``: the fraction of prunable weights on whose
  keep/remove decision the runs calibrated on ``i`` and ``k`` agree (1 on the diagonal).

The result is ``domains.json`` and ``domains.md`` in the comparison's ``--out``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from llm_surgeon.data.config import DataConfig, EvalConfig
from llm_surgeon.data.domains import DOMAINS, check_available
from llm_surgeon.data.perplexity import perplexity
from llm_surgeon.data.windows import eval_windows
from llm_surgeon.errors import ConfigError
from llm_surgeon.model.loading import load_model
from llm_surgeon.model.masks import load_masks
from llm_surgeon.run import ppl_cache
from llm_surgeon.run.config import RunConfig
from llm_surgeon.util.io import write_json
from llm_surgeon.util.progress import no_progress_bars

log = logging.getLogger(__name__)


def data_for(dataset: str, split: str, data_dir: str | None) -> dict[str, Any]:
    """A ``DataConfig`` dictionary; ``data_dir`` only for datasets that read one."""
    data: dict[str, Any] = {"dataset": dataset, "split": split}
    if data_dir and dataset not in DOMAINS:
        data["data_dir"] = data_dir
    return data


def _calibration_name(spec: str) -> str:
    """The canonical name of one calibration source (``chat`` included), or a mixture spec as given."""
    from llm_surgeon.data.mixture import CHAT, parse_sources
    from llm_surgeon.data.text import dataset_name

    if ":" in spec or "," in spec:
        parse_sources(spec)  # checked; kept as given
        return spec
    return CHAT if spec == CHAT else dataset_name(spec)


def domain_lists(calib: Sequence[str] | None, evals: Sequence[str] | None,
                 default: str | None) -> tuple[list[str] | None, list[str] | None]:
    """Canonical ``(calibration, evaluation)`` dataset names; ``(None, None)`` if neither is given.

    Calibration defaults to ``[default or "wikitext2"]`` and may name ``chat`` (or, as the
    default, a mixture); evaluation defaults to the text datasets of the calibration list
    (``wikitext2`` if it has none).

    Raises:
        ConfigError: an unknown dataset, one named twice, chat to evaluate on, or a domain
            not fetched yet.
    """
    from llm_surgeon.data.mixture import parse_sources, text_dataset
    from llm_surgeon.data.text import dataset_name

    if not calib and not evals:
        return None, None
    calib_names = [_calibration_name(d) for d in (calib or [default or "wikitext2"])]
    texts = list(dict.fromkeys(t for t in map(text_dataset, calib_names) if t is not None))
    eval_names = [dataset_name(d) for d in (evals or texts or ["wikitext2"])]
    for names, flag in ((calib_names, "--calib-data"), (eval_names, "--eval-data")):
        if len(set(names)) != len(names):
            raise ConfigError(f"{flag} names a dataset twice: {','.join(names)}")
    for source in {s.name for name in calib_names for s in parse_sources(name)} | set(eval_names):
        if source in DOMAINS:
            check_available(source)  # e.g. man pages not fetched: fail before any run
    return calib_names, eval_names


def domain_run(data: dict[str, Any], calib: str, evals: Sequence[str], *,
               splits: tuple[str | None, str | None], data_dir: str | None) -> dict[str, Any]:
    """A run's settings calibrated on ``calib`` and evaluated on it (else on ``evals[0]``).

    The pruned model is saved: :func:`cross_domain` evaluates it on the other domains.
    ``splits`` are the calibration and evaluation splits (default ``train`` and ``test``).
    """
    own = calib if calib in evals else evals[0]
    data = dict(data, save_model=True)
    data["calibration"] = dict(data["calibration"], data=data_for(calib, splits[0] or "train", data_dir))
    data["evaluation"] = dict(data["evaluation"], data=data_for(own, splits[1] or "test", data_dir))
    return data


def mask_agreement(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    """Fraction of weights with the same keep/remove decision in two masks of one model.

    Raises:
        ConfigError: the masks cover different modules or shapes (different models).
    """
    if a.keys() != b.keys() or any(a[n].shape != b[n].shape for n in a):
        raise ConfigError("the runs' masks are of different models (modules or shapes differ)")
    same = sum(int(torch.eq(a[n], b[n]).sum()) for n in a)
    total = sum(a[n].numel() for n in a)
    return same / total if total else 1.0


def agreement_matrix(masks: Sequence[Mapping[str, Tensor] | None]) -> list[list[float | None]]:
    """Pairwise :func:`mask_agreement`; ``None`` where a run has no masks."""
    n = len(masks)
    out: list[list[float | None]] = [[None] * n for _ in range(n)]
    for i in range(n):
        for k in range(i, n):
            if masks[i] is not None and masks[k] is not None:
                out[i][k] = out[k][i] = mask_agreement(masks[i], masks[k])
    return out


class _Evaluator:
    """Perplexities of models on the evaluation domains; windows tokenised once per domain."""

    def __init__(self, base: RunConfig, eval_data: Sequence[dict[str, Any]], progress: bool) -> None:
        self.base = base
        self.eval_data = list(eval_data)
        self.progress = progress
        self._windows: dict[int, Tensor] = {}

    def windows(self, j: int, tokenizer: Any) -> Tensor:
        if j not in self._windows:
            ev = self.base.evaluation
            config = EvalConfig(data=DataConfig(**self.eval_data[j]), seqlen=ev.seqlen,
                                windows=ev.windows, batch_size=ev.batch_size)
            self._windows[j] = eval_windows(tokenizer, config)
        return self._windows[j]

    def fill(self, model_spec: str, row: dict[str, float | None], *, dense: bool) -> None:
        """Evaluate ``model_spec`` on every domain whose entry in ``row`` is ``None``."""
        todo = [j for j, d in enumerate(self.eval_data) if row.get(d["dataset"]) is None]
        if not todo:
            return
        model, tokenizer = load_model(model_spec, dtype=self.base.dtype, device=self.base.device,
                                      trust_remote_code=self.base.trust_remote_code)
        for j in todo:
            windows = self.windows(j, tokenizer)
            key = ppl_cache.key(self.base, windows) if dense else None
            ppl = ppl_cache.get(key)
            if ppl is None:
                ppl = perplexity(model, windows, batch_size=self.base.evaluation.batch_size,
                                 progress=self.progress)
                ppl_cache.put(key, ppl)
            row[self.eval_data[j]["dataset"]] = ppl
            log.info("%s on %s: ppl %.3f", model_spec, self.eval_data[j]["dataset"], ppl)
        del model


def _groups(runs: Sequence[dict[str, Any]]) -> dict[tuple[str, str, float], list[dict[str, Any]]]:
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["method"], r["structure"], r["target_size"]), []).append(r)
    return groups


def cross_domain(result: dict[str, Any], base: RunConfig, calib: Sequence[str],
                 eval_data: Sequence[dict[str, Any]], *, progress: bool) -> dict[str, Any]:
    """The matrices of a finished comparison run per calibration domain.

    Args:
        result: the ``compare.json`` content; each run row has ``calib_data``, ``out``,
            ``status`` and, when it evaluated its own domain, ``ppl``/``ppl_before``.
        base: one of the runs' configurations (model, dtype, device, evaluation windows).
        calib: calibration dataset names, the matrices' rows.
        eval_data: evaluation ``DataConfig`` dictionaries, the columns.
        progress: progress bars; without them the libraries' bars (weight loading, datasets)
            are off too.

    Returns:
        ``{"calib_data", "eval_data", "dense_ppl": {domain: ppl}, "matrices": [...]}``,
        one matrix entry per method, structure and size.
    """
    with no_progress_bars(not progress):
        return _matrices(result, base, calib, eval_data, progress)


def _matrices(result: dict[str, Any], base: RunConfig, calib: Sequence[str],
              eval_data: Sequence[dict[str, Any]], progress: bool) -> dict[str, Any]:
    names = [d["dataset"] for d in eval_data]
    evaluator = _Evaluator(base, eval_data, progress)
    dense: dict[str, float | None] = dict.fromkeys(names)
    for r in result["runs"]:
        if r.get("status") == "ok" and r.get("eval_data") in dense and r.get("ppl_before") is not None:
            dense[r["eval_data"]] = r["ppl_before"]
    evaluator.fill(base.model, dense, dense=True)
    matrices = []
    for (method, structure, target), runs in _groups(result["runs"]).items():
        by_calib = {r["calib_data"]: r for r in runs}
        ppl_rows, masks = [], []
        for name in calib:
            r = by_calib.get(name)
            row: dict[str, float | None] = dict.fromkeys(names)
            if r is not None and r.get("status") == "ok":
                if r.get("eval_data") in row:
                    row[r["eval_data"]] = r.get("ppl")
                evaluator.fill(r["out"], row, dense=False)
                masks.append(load_masks(r["out"]))
            else:
                masks.append(None)
            ppl_rows.append([row[n] for n in names])
        matrices.append({"method": method, "structure": structure, "target_size": target,
                         "ppl": ppl_rows, "mask_equivalence": agreement_matrix(masks)})
        del masks
    return {"calib_data": list(calib), "eval_data": names, "dense_ppl": dense, "matrices": matrices}


def _cell(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def render_markdown(domains: dict[str, Any]) -> str:
    """``domains.md``: per method / structure / size, the two matrices as tables."""
    calib, evals = domains["calib_data"], domains["eval_data"]
    lines = ["# Task-specific compression", "",
             "Rows: calibration domain. Perplexity columns: evaluation domain. Mask equivalence: "
             "fraction of prunable weights with the same keep/remove decision.", "",
             "Dense perplexity: " + ", ".join(f"{n} {_cell(domains['dense_ppl'].get(n), '.2f')}"
                                             for n in evals), ""]
    for m in domains["matrices"]:
        lines += [f"## {m['method']} {m['structure']} {m['target_size']:g}", "",
                  "| calibrated on | " + " | ".join(f"ppl {n}" for n in evals) + " | "
                  + " | ".join(f"eq. {n}" for n in calib) + " |",
                  "|---|" + "---:|" * (len(evals) + len(calib))]
        for name, ppl, eq in zip(calib, m["ppl"], m["mask_equivalence"], strict=True):
            lines.append(f"| {name} | " + " | ".join(_cell(v, ".2f") for v in ppl) + " | "
                         + " | ".join(_cell(v, ".4f") for v in eq) + " |")
        lines.append("")
    return "\n".join(lines)


def write_domains(out: Path, domains: dict[str, Any]) -> None:
    """Write ``domains.json`` and ``domains.md`` into ``out``."""
    write_json(out / "domains.json", domains)
    tmp = out / ".domains.md.tmp"
    tmp.write_text(render_markdown(domains), encoding="utf-8")
    tmp.replace(out / "domains.md")
