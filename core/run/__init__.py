"""One pruning run: configuration, recipes, validation, the runner, the report.

Submodules are imported on use (``llm_surgeon.run.runner`` loads the model stack).
"""
