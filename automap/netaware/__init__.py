"""Network-aware inference: with both model definitions at hand, order by execution and settle doubts by running.

A checkpoint holds names, shapes and declaration order; some ports defeat all three (a port that declares
`ffn_norm` before `attention_norm`, layer norms numbered against the order they run in, a square weight
stored transposed, the pieces of a fused projection). With the two models, automap traces the order in which
each parameter is first used, tries the interchangeable choices in the target model until its modules
reproduce the source model's, and proves the whole mapping by running both models. When the proof fails, the
first diverging module is named with the parameters involved.

Importing this package imports neither torch nor MindSpore, and the machinery itself only on first use.
The command line reaches it through this package only: `add_model_options` declares the model and input options
of `automap verify`, `infer` and `convert`, and `model_options` turns them into a `ModelOptions` that builds the
models and runs them.

Inside, `_frameworks` puts both frameworks behind one `Backend` interface; `networks` (load, run, compare;
public for the benchmarks) and `_nets` (traced and hooked runs) are written against it; `_probing`, `_resolve`,
`_settle`, `_localise` and `_api` are the steps of network-aware inference; `verify` checks two loaded models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._api import NetworkInference, check_with_networks, infer_with_networks
    from ._localise import Divergence, locate_divergence
    from ._options import ModelOptions, add_model_options, model_options, model_options_problem, require_frameworks

__all__ = [
    "Divergence",
    "ModelOptions",
    "NetworkInference",
    "add_model_options",
    "check_with_networks",
    "infer_with_networks",
    "locate_divergence",
    "model_options",
    "model_options_problem",
    "require_frameworks",
]

_WHERE = {
    "NetworkInference": "automap.netaware._api",
    "check_with_networks": "automap.netaware._api",
    "infer_with_networks": "automap.netaware._api",
    "Divergence": "automap.netaware._localise",
    "locate_divergence": "automap.netaware._localise",
    "ModelOptions": "automap.netaware._options",
    "add_model_options": "automap.netaware._options",
    "model_options": "automap.netaware._options",
    "model_options_problem": "automap.netaware._options",
    "require_frameworks": "automap.netaware._options",
}


def __getattr__(name: str) -> object:
    """The public names, imported on first use."""
    module = _WHERE.get(name)
    if module is None:
        msg = f"module 'automap.netaware' has no attribute {name!r}"
        raise AttributeError(msg)
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
