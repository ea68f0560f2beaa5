"""Model and config classes of compact (``surgeon_*``) folders.

These files are copied next to the weights of a compact export and loaded from there with
``trust_remote_code=True``, so they import only torch, transformers and each other
(relative imports); nothing of llm-surgeon (checked by ``tests/export/test_modeling_files.py``
and the import-linter contract).
"""
