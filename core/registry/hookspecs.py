"""Hook specifications: the contract between llm-surgeon and its plugins.

Every hook receives a single ``register`` callable. A plugin calls it once per
thing it provides::

    register(name, factory, config=ConfigClass, description="one line")

``factory(config) -> object`` builds a fresh instance for each run (estimators
keep per-run state, so instances are never shared). ``config`` is a frozen attrs
class whose defaults are used when the user gives no options; it may be omitted
for plugins without options.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("llm_surgeon")
hookimpl = pluggy.HookimplMarker("llm_surgeon")


@hookspec
def register_curvatures(register):
    """Register curvature estimators (``llm_surgeon.curvature.CurvatureEstimator``)."""


@hookspec
def register_structures(register):
    """Register structure handlers (``llm_surgeon.pruning.structures.Structure``)."""


@hookspec
def register_methods(register):
    """Register pruning methods and baselines (``llm_surgeon.methods.Method``)."""


@hookspec
def register_architectures(register):
    """Register architecture adapters (``llm_surgeon.model.adapters.ArchitectureAdapter``).

    The name of an architecture is the Hugging Face ``config.model_type`` it handles.
    """
