"""Calling a model through another of its methods (`--torch-method get_logits`) for every run of a session.

Some models compute what the other side's model returns only in a method of their own: open_clip's `forward`
returns normalised features and the logit scale, its `get_logits` the logits MindFormers' CLIP returns. The
method stands in for `forward` (`construct`) on the model object for the time of the session, so that every
run, the root module's hooks and a re-run of the whole model go through it; undone afterwards. A method that
calls the model itself gets the model's own `forward` there (no endless recursion).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from automap._advice import option_name
from automap._errors import AutomapError

from ._nets import Net

_SHOWN = 8


def call_through(net: Net, method: str | None) -> tuple[Callable[[], None], str] | None:
    """Make `net`'s model run `method` when it is called; how to undo it and the note saying so.

    Returns:
        None when `method` is None or the model's own body (`forward`, `construct`).

    Raises:
        AutomapError: the model has no such method.
    """
    body = net.backend.body
    if method is None or method == body:
        return None
    model = net.module
    chosen = getattr(model, method, None) if not method.startswith("_") else None
    if not callable(chosen) or net.backend.is_model(chosen):
        raise AutomapError(_no_method(net, method))
    original: Callable[..., Any] = getattr(model, body)
    inside = False

    def entry(*args: Any, **kwargs: Any) -> Any:
        nonlocal inside
        if inside:  # the method calls the model itself: that call runs the model's own body
            return original(*args, **kwargs)
        inside = True
        try:
            return chosen(*args, **kwargs)
        finally:
            inside = False

    missing = object()
    previous = vars(model).get(body, missing)
    object.__setattr__(model, body, entry)  # the frameworks' own __setattr__ would file a function elsewhere

    def undo() -> None:
        if previous is missing:
            object.__delattr__(model, body)
        else:
            object.__setattr__(model, body, previous)

    title = net.backend.title
    return undo, f"{title} model called through its method {method} (instead of {body})"


def _no_method(net: Net, method: str) -> str:
    """The error for a method the model lacks, with the methods of its own class that it could mean."""
    model_class = type(net.module)
    own = sorted(
        {
            name
            for klass in model_class.__mro__
            if klass.__module__.split(".")[0] not in ("torch", "mindspore", "builtins")  # torchvision's are shown
            for name, value in vars(klass).items()
            if callable(value) and not name.startswith("_") and not isinstance(value, type)
        }
    )
    close = difflib.get_close_matches(method, own, n=3)
    listed = [*close, *(n for n in own if n not in close)][:_SHOWN]
    more = f", ... ({len(own)} in all)" if len(own) > _SHOWN else ""
    offer = f"; its methods: {', '.join(listed)}{more}" if listed else ""
    keyword = "torch_method" if net.framework == "pytorch" else "mindspore_method"
    return (
        f"the {net.backend.title} model ({model_class.__name__}) has no method {method!r} to call instead of "
        f"{net.backend.body}{offer}; choose one with {option_name(keyword)}"
    )
