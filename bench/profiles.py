"""Benchmark profiles: which pruning runs a profile contains, as plain data.

A :class:`Profile` is a ``base`` dictionary of :class:`~llm_surgeon.run.config.RunConfig`
fields shared by all its runs, plus a list of runs, each a dictionary with an ``id``
and the fields it overrides. :func:`expand` merges them into one
:class:`BenchRun` per run, ready for ``RunConfig.from_dict``.

Profiles (``python -m bench list`` prints them):

* ``ci``: a tiny setting exercising the same code in a minute or two.
* ``quick``: SmolLM2-135M, 16 x 256 calibration tokens, 16 test windows of 512.
* ``compact``: the method x structure table at reduced cost (8 x 512 calibration
  tokens, 2 shots, 32 test windows of 512).
* ``cpu``: 32 x 512 calibration tokens, 64 test windows of 512; the structured,
  unstructured and 2:4 comparisons of the paper at small scale (hours on 2 cores).
* ``gemma3``: the ``cpu`` protocol on Gemma 3 270M (``gemma3-270m``).
* ``dims``: the ``cpu`` protocol at real (compact-export) sizes: ``row-col`` with
  propagation and ``size: real`` against the ``dims`` structure (surgeon and kobd with
  ``cost: readers`` and ``cost: members``, magnitude with ``members``).
* ``ablations``: SmolLM2-135M, the ``cpu`` protocol; one setting of surgeon changed at a
  time (nearest-K-FAC ranks, shots, Fisher type, calibration size, damping, element chunks),
  listed in the order of their value (the order they are run in).
* ``paper``: the paper's settings (128 x 2048 calibration tokens, 40 shots for
  structured pruning, the full test set) for any Hugging Face causal LM (``--model``).
* ``scale``: a random Llama with Llama-2-7B's widths and 2 layers, random tokens, one
  shot of surgeon row-col and element: seconds per layer and peak memory at 7B widths
  (``bench/configs/``, :mod:`bench.simulate`).
* ``chat``: the ``cpu`` protocol calibrated on WikiText-2, on self-generated chat and on
  a 50/50 mix, with fidelity checks (KL to dense, greedy match, question accuracy).
"""

from __future__ import annotations

import copy
from typing import Any

import attrs

#: The model every profile uses unless ``--model`` overrides it.
DEFAULT_MODEL = "smollm2-135m"


@attrs.frozen
class Profile:
    """A named list of pruning runs.

    Attributes:
        name: profile name (``quick``, ``cpu``...).
        description: one line for ``python -m bench list``.
        base: ``RunConfig`` fields shared by every run (nested dicts for
            ``calibration``, ``evaluation`` and ``lora``).
        runs: per run, ``{"id": ..., **overrides}``; overrides are merged into ``base``.
        figures: draw the profile's figures (perplexity against size, sparsity...).
    """

    name: str
    description: str
    base: dict[str, Any]
    runs: tuple[dict[str, Any], ...]
    figures: bool = True


@attrs.frozen
class BenchRun:
    """One run of a profile: its id and the full ``RunConfig`` dictionary.

    ``simulate``: prune a randomly initialised model of ``config["model"]``'s configuration
    on random tokens (:mod:`bench.simulate`) instead of the model's weights and text.
    """

    profile: str
    id: str
    config: dict[str, Any]
    simulate: bool = False


def _data(split: str) -> dict[str, Any]:
    return {"dataset": "wikitext2", "data_dir": None, "split": split}


def _base(nsamples: int, cal_seqlen: int, windows: int | None, eval_seqlen: int = 512) -> dict[str, Any]:
    """Shared settings: calibrate on WikiText-2 validation, evaluate on WikiText-2 test."""
    return {
        "model": DEFAULT_MODEL,
        "calibration": {"data": _data("validation"), "nsamples": nsamples, "seqlen": cal_seqlen,
                        "batch_size": 1, "seed": 0},
        "evaluation": {"data": _data("test"), "seqlen": eval_seqlen, "windows": windows,
                       "batch_size": 1},
        "seed": 0,
    }


def _run(method: str, structure: str, target: float, shots: int = 1, *, lora: bool = False,
         every_shot: bool = False, tag: str = "", options: dict[str, Any] | None = None) -> dict[str, Any]:
    """One run entry; its id reads ``method-structure-target[-tag]``."""
    short = structure.replace(":", "of").replace("row-col", "rowcol")
    run_id = f"{method}-{short}-{target:g}" + (f"-{tag}" if tag else "")
    entry: dict[str, Any] = {"id": run_id, "method": method, "structure": structure,
                             "target_size": target, "shots": shots}
    if options:
        entry["structure_options"] = dict(options)
    if lora:
        entry["lora"] = {"enabled": True}
    if every_shot:
        entry["evaluation"] = {"every_shot": True}
    return entry


#: Methods whose curvature is re-estimated between shots, so more shots can help.
MULTI_SHOT = ("surgeon", "kobd", "lobd")


def _shots(method: str, shots: int) -> int:
    return shots if method in MULTI_SHOT else 1


def _ci() -> Profile:
    return Profile(
        name="ci",
        description="tiny smoke test of the whole pipeline (about a minute on 2 cores)",
        base=_base(nsamples=4, cal_seqlen=128, windows=4, eval_seqlen=256),
        runs=(
            _run("magnitude", "row-col", 0.9),
            _run("surgeon", "row-col", 0.9),
        ),
    )


def _quick() -> Profile:
    return Profile(
        name="quick",
        description="SmolLM2-135M, 16 x 256 calibration, 16 x 512 test tokens (minutes)",
        base=_base(nsamples=16, cal_seqlen=256, windows=16),
        runs=(
            _run("magnitude", "row-col", 0.9),
            _run("surgeon", "row-col", 0.9),
            _run("magnitude", "element", 0.7),
            _run("wanda", "element", 0.7),
            _run("surgeon", "element", 0.7),
        ),
    )


def _compact() -> Profile:
    runs = [
        _run(method, structure, target, _shots(method, 2))
        for structure, target in (("row-col", 0.8), ("element", 0.5), ("2:4", 0.5))
        for method in ("surgeon", "magnitude", "lobd", "kobd")
    ]
    return Profile(
        name="compact",
        description="the method x structure table at reduced cost: 8 x 512 calibration, 2 shots, "
                    "32 x 512 test tokens (about 40 minutes on 2 cores)",
        base=_base(nsamples=8, cal_seqlen=512, windows=32),
        runs=tuple(runs),
    )


def _cpu() -> Profile:
    shots = 5
    runs: list[dict[str, Any]] = []
    for target in (0.9, 0.8, 0.7):
        for method in ("surgeon", "kobd", "lobd", "magnitude"):
            every = method == "surgeon" and target == 0.7
            runs.append(_run(method, "row-col", target, _shots(method, shots), every_shot=every))
    for structure, target in (("element", 0.5), ("2:4", 0.5)):
        for method in ("surgeon", "kobd", "lobd", "sparsegpt", "wanda", "magnitude"):
            every = method == "surgeon" and structure == "element"
            runs.append(_run(method, structure, target, _shots(method, shots), every_shot=every))
    for structure, target in (("row-col", 0.8), ("row-col", 0.7), ("element", 0.5)):
        runs.append(_run("surgeon", structure, target, shots, lora=True, tag="lora"))
    # The control: the same LoRA phases on the unpruned model (nothing is removed at size
    # 1.0), to separate domain adaptation to the calibration data from repair of pruning.
    runs.append(_run("magnitude", "row-col", 1.0, shots, lora=True, tag="lora"))
    return Profile(
        name="cpu",
        description="32 x 512 calibration, 64 x 512 test tokens; structured, unstructured, 2:4 and "
                    "LoRA comparisons (hours on 2 cores)",
        base=_base(nsamples=32, cal_seqlen=512, windows=64),
        runs=tuple(runs),
    )


def _gemma3() -> Profile:
    """The ``cpu`` protocol on Gemma 3 270M, in the order the runs matter most."""
    order = (("surgeon", "row-col", 0.8), ("sparsegpt", "element", 0.5), ("wanda", "element", 0.5),
             ("surgeon", "element", 0.5), ("surgeon", "2:4", 0.5), ("sparsegpt", "2:4", 0.5),
             ("wanda", "2:4", 0.5))
    base = _base(nsamples=32, cal_seqlen=512, windows=64)
    base["model"] = "gemma3-270m"
    return Profile(
        name="gemma3",
        description="Gemma 3 270M (Q4_K_M GGUF) with the cpu protocol: surgeon row-col 0.8, element "
                    "0.5, 2:4; sparsegpt and wanda 0.5 and 2:4 (hours on 2 cores)",
        base=base,
        runs=tuple(_run(m, st, t, _shots(m, 5)) for m, st, t in order),
    )


def _dims() -> Profile:
    """The ``cpu`` protocol at real sizes: row-col with propagation against ``dims``."""
    shots = 5
    runs: list[dict[str, Any]] = []
    # The 0.8 row first: if time is short, it is the one comparison that exists.
    for target in (0.8, 0.9, 0.7):
        runs.append(_run("surgeon", "row-col", target, shots, tag="real", options={"size": "real"}))
        for method in ("surgeon", "kobd", "magnitude"):
            runs.append(_run(method, "dims", target, _shots(method, shots), tag="members",
                             options={"cost": "members"}))
    # cost=readers, the default: candidates costed and updated on their reading columns only.
    for target in (0.8, 0.9, 0.7):
        for method in ("surgeon", "kobd"):
            runs.append(_run(method, "dims", target, shots, tag="readers", options={"cost": "readers"}))
    return Profile(
        name="dims",
        description="the cpu protocol at real (compact-export) sizes 0.9 / 0.8 / 0.7: surgeon row-col "
                    "(with propagation) against surgeon and kobd dims (cost=readers and cost=members) and "
                    "magnitude dims (hours on 2 cores)",
        base=_base(nsamples=32, cal_seqlen=512, windows=64),
        runs=tuple(runs),
    )


def _ablation(tag: str, structure: str = "row-col", target: float = 0.8, shots: int = 5,
              **override: Any) -> dict[str, Any]:
    """One surgeon run of the ``ablations`` profile: the cpu protocol with ``override``."""
    return {**_run("surgeon", structure, target, shots, tag=tag), **override}


def _nearest(rank: int) -> dict[str, Any]:
    return {"curvature": "nearest-kfac", "curvature_options": {"rank": rank}}


def _dims_lora() -> list[dict[str, Any]]:
    """The LoRA comparison for the dependency-aware ``dims`` structure, with its own control.

    As in ``cpu``: surgeon with and without LoRA at size 0.8, and the same LoRA phases on the
    unpruned model (size 1.0, nothing removed).
    """
    return [_run("surgeon", "dims", 0.8, 5), _run("surgeon", "dims", 0.8, 5, lora=True, tag="lora"),
            _run("magnitude", "dims", 1.0, 5, lora=True, tag="lora")]


def _ablations() -> Profile:
    # Ordered by value: the runs are made one at a time in this order.
    runs = [
        _ablation("kfac"),
        _ablation("nkfac-r1", **_nearest(1)),
        _ablation("nkfac-r2", **_nearest(2)),
        _ablation("shots1", shots=1),
        _ablation("shots10", shots=10),
        _ablation("calib8", calibration={"nsamples": 8}),
        _ablation("calib128", calibration={"nsamples": 128}),
        _ablation("damp0.03", damping_g=0.03, damping_a=0.03),
        _ablation("damp0.3", damping_g=0.3, damping_a=0.3),
        _ablation("sampled", curvature_options={"fisher_type": "sampled"}),
        _ablation("kfac", "element", 0.5),
        _ablation("chunkrow", "element", 0.5, structure_options={"chunk_size": "row"}),
        _ablation("chunk1024", "element", 0.5, structure_options={"chunk_size": 1024}),
        _ablation("nkfac-r1", "element", 0.5, **_nearest(1)),
        _ablation("nkfac-r2", "element", 0.5, **_nearest(2)),
        *_dims_lora(),
    ]
    return Profile(
        name="ablations",
        description="surgeon on the cpu protocol, one setting changed at a time: nearest-K-FAC "
                    "R=1/2, shots, Fisher type, calibration size, damping, element chunks (a day "
                    "on 2 cores)",
        base=_base(nsamples=32, cal_seqlen=512, windows=64),
        runs=tuple(runs),
    )


def _paper() -> Profile:
    runs: list[dict[str, Any]] = []
    for target in (0.9, 0.8, 0.7, 0.6, 0.5):
        for method in ("surgeon", "kobd", "lobd", "magnitude"):
            runs.append(_run(method, "row-col", target, _shots(method, 40)))
    for target in (0.9, 0.8, 0.7, 0.6, 0.5):
        for method in ("surgeon", "sparsegpt", "wanda", "magnitude"):
            runs.append(_run(method, "element", target, _shots(method, 5)))
    for method in ("surgeon", "sparsegpt", "wanda", "magnitude"):
        runs.append(_run(method, "2:4", 0.5, _shots(method, 5)))
    return Profile(
        name="paper",
        description="the paper's settings: 128 x 2048 calibration, 40 shots (structured), full "
                    "test set; any HF causal LM via --model (GPU or patience)",
        base=_base(nsamples=128, cal_seqlen=2048, windows=None, eval_seqlen=2048),
        runs=tuple(runs),
    )


#: The ``scale`` profile's model: Llama-2-7B's widths, 2 of its 32 layers (a config only).
SCALE_MODEL = "bench/configs/llama2-7b-2layers"


def _scale() -> Profile:
    base = _base(nsamples=4, cal_seqlen=512, windows=None)
    base["model"] = SCALE_MODEL
    base["evaluation"]["enabled"] = False  # random weights: no perplexity
    # One shot each, the first of the cpu profile's 5-shot schedules to 0.8 and 0.5.
    runs = (
        {**_run("surgeon", "row-col", 0.96), "id": "surgeon-rowcol-shot1", "simulate": True},
        {**_run("surgeon", "element", 0.9), "id": "surgeon-element-shot1", "simulate": True},
    )
    return Profile(
        name="scale",
        description="random Llama with Llama-2-7B widths, 2 layers, 4 x 512 random tokens: one shot of "
                    "surgeon row-col and element, seconds per layer and peak RSS (about 1 h on 2 cores)",
        base=base,
        runs=runs,
    )


#: Calibrations of the ``chat`` profile: run-id tag -> calibration dataset.
CHAT_CALIBRATIONS = {"wikitext2": "wikitext2", "chat": "chat", "mix": "wikitext2:0.5,chat:0.5"}


def _chat() -> Profile:
    runs = []
    for method, structure, target in (("surgeon", "row-col", 0.8), ("surgeon", "element", 0.5),
                                      ("sparsegpt", "element", 0.5), ("surgeon", "2:4", 0.5),
                                      ("sparsegpt", "2:4", 0.5)):
        for tag, dataset in CHAT_CALIBRATIONS.items():
            entry = _run(method, structure, target, _shots(method, 5), tag=tag)
            entry["calibration"] = {"data": {"dataset": dataset}}
            runs.append(entry)
    base = _base(nsamples=32, cal_seqlen=512, windows=64)
    base["fidelity"] = {"enabled": True}
    return Profile(
        name="chat",
        description="cpu protocol calibrated on WikiText-2, self-generated chat and a 50/50 mix, "
                    "with fidelity checks (hours on 2 cores)",
        base=base,
        runs=tuple(runs),
        figures=False,
    )


_BUILDERS = {"ci": _ci, "quick": _quick, "compact": _compact, "cpu": _cpu, "gemma3": _gemma3,
             "dims": _dims, "ablations": _ablations, "paper": _paper, "scale": _scale, "chat": _chat}


def names() -> list[str]:
    """Names of the available profiles."""
    return list(_BUILDERS)


def get(name: str) -> Profile:
    """The profile called ``name``.

    Raises:
        KeyError: with the valid names, for an unknown profile.
    """
    try:
        return _BUILDERS[name]()
    except KeyError:
        raise KeyError(f"unknown profile {name!r} (available: {', '.join(_BUILDERS)})") from None


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``override``, recursing into nested dictionaries (copies)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def expand(profile: Profile, *, model: str | None = None, data_dir: str | None = None,
           device: str | None = None) -> list[BenchRun]:
    """The runs of ``profile`` as full ``RunConfig`` dictionaries.

    Args:
        profile: the profile.
        model: overrides every run's model (a local folder, ``.gguf`` file or hub id).
        data_dir: local WikiText-2 folder for calibration and evaluation data.
        device: overrides the device (``cuda``...).
    """
    runs = []
    for entry in profile.runs:
        override = {k: v for k, v in entry.items() if k not in ("id", "simulate")}
        config = merge(profile.base, override)
        if model is not None:
            config["model"] = model
        if device is not None:
            config["device"] = device
        if data_dir is not None:
            for section in ("calibration", "evaluation"):
                config = merge(config, {section: {"data": {"data_dir": data_dir}}})
        config["out"] = None
        runs.append(BenchRun(profile=profile.name, id=entry["id"], config=config,
                             simulate=bool(entry.get("simulate", False))))
    return runs
