"""The llm-surgeon benchmark suite: ``python -m bench run PROFILE`` and ``python -m bench render``.

See ``bench/README.md``. Profiles live in :mod:`bench.profiles`, records in
:mod:`bench.records`, the runner in :mod:`bench.runner`, tables in :mod:`bench.render`
and figures in :mod:`bench.figures`.
"""
