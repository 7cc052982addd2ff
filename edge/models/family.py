"""What one model family is, in one value: :class:`FamilySpec`, the last thing in its family file.

    FamilySpec(name, protected, slim_rule, roots_in_definition_order, resync, pass_through)

- ``protected``: module-path patterns (``re.search``) whose output channels the pruner never
  removes (stem, classifier, layers feeding a channel-slicing operator torch-pruning cannot trace);
- ``slim_rule``: the ``edge.models.slim.INDEX_RULES`` entry that says which channels a width-w
  slice of a slimmable (MutualNet) net keeps; None: the family is not slimmable;
- ``roots_in_definition_order``: torch-pruning's groups rooted in definition order (needed where
  its default order would root a group at a layer whose consumers it cannot prune consistently);
- ``resync(model)``: recompute attributes the family's modules derive from channel counts after
  pruning shrank their convolutions; None: nothing to recompute;
- ``pass_through``: the family's weightless channel-wise module types the pruner treats as leaves.

Adding a family: a module under ``edge/models/`` with its builders and, last, its spec; then one
line in ``edge.models.registry.FAMILIES`` and one ``ModelInfo`` line per model in ``MODELS``.
Imports no torch (the spec's callables and types come from the torch side of the family file).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class FamilySpec:
    name: str
    protected: tuple[str, ...]
    slim_rule: str | None = None
    roots_in_definition_order: bool = False
    resync: Callable[[Any], None] | None = None
    pass_through: tuple[type, ...] = ()
