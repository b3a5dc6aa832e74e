"""Recognise training state (optimizer moments, step counters, loss scales) among checkpoint entries.

MindSpore's `save_checkpoint(train_network)` stores the optimizer's state beside the weights, in one flat
namespace. These entries are not model weights: readers set them aside so that inference and conversion see
the model only. The lists are data, not logic: add a name here when a new optimizer shows up.
"""

from __future__ import annotations

import re

__all__ = ["is_training_state"]

# Whole names that are always training state.
_EXACT = frozenset(
    {
        "global_step",
        "learning_rate",
        "momentum",
        "beta1_power",
        "beta2_power",
        "scale_sense",
        "loss_scale",
        "current_iterator_step",
        "last_overflow_iterator_step",
        "epoch_num",
        "step_num",
        "weight_decay",
        "global_step_increase_tensor",
    }
)

# Leading name components under which optimizers keep one slot per weight (`moments.layer.weight`).
_PREFIXES = (
    "moments",
    "moment1",
    "moment2",
    "moment3",
    "adam_m",
    "adam_v",
    "accum",
    "stat",
    "vhat",
    "exp_avg",
    "exp_avg_sq",
)

_PREFIX_RE = re.compile(r"^(?:optimizer\.)?(?:" + "|".join(map(re.escape, _PREFIXES)) + r")\.")


def is_training_state(name: str) -> bool:
    """Tell whether a MindSpore checkpoint entry is optimizer or loop state rather than a model weight.

    Args:
        name: the entry's full name.

    Returns:
        True for names such as `global_step`, `moments.fc.weight` or `adam_m.encoder.dense.weight`.

    Example:
        >>> is_training_state("adam_v.layers.0.wq.weight"), is_training_state("layers.0.wq.weight")
        (True, False)
    """
    return name in _EXACT or bool(_PREFIX_RE.match(name))
