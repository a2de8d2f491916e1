"""Recorded morphisms in plain words: the one place that names operations for people.

An operation is the JSON-able dict a morphism records (formats in :mod:`engine.nas.surgery`,
e.g. ``{"op": "wider", "layer": 5, "kind": "conv", "add": 32, ...}``). The trial records,
the proposals' reasons, the progress lines and the figures all take their words from here;
nothing parses the words back (the figures read the dicts).

Operations come from files written by other versions too, so every function here accepts
any dict: what it cannot describe in full it names by its ``op``.

>>> describe({"op": "wider", "layer": 5, "kind": "conv", "add": 32, "sources": [], "noise_seed": 0})
'widen conv 5 by 32 filters'
>>> describe_all([{"op": "add_skip", "start": 3, "end": 9}, {"op": "mystery_move"}])
'add skip (sum) from layer 3 to layer 9; mystery move'
>>> kind_word({"op": "concat_skip"})
'skip'
"""

from __future__ import annotations

from typing import Any, Sequence

NO_OPERATIONS = "seed architecture"  # a network that no morphism made

# One short word per kind of morphism, for labels where a sentence does not fit.
KIND_WORDS = {"deeper": "deeper", "wider": "wider", "add_skip": "skip", "concat_skip": "skip"}


def _name(op: Any) -> str:
    """The operation's ``op`` in words (``add_skip`` -> ``add skip``), ``change`` when absent."""
    kind = op.get("op") if isinstance(op, dict) else None
    return str(kind or "change").replace("_", " ")


def _sentence(op: dict) -> str | None:
    """The full words for an operation of a known kind, None for an unknown kind (a KeyError
    or TypeError when a known kind lacks a field)."""
    kind = op.get("op")
    if kind == "deeper":
        what = f"a {op['kernel']}x{op['kernel']} conv" if op["part"] == "conv" else "a dense layer"
        return (f"deepen after {op.get('after_kind', 'layer')} {op['after']} with {what}"
                + (" + ReLU" if op.get("relu") else ""))
    if kind == "wider":
        unit = "filters" if op.get("kind", "conv") == "conv" else "units"
        return (f"widen {op.get('kind', 'layer')} {op['layer']} by {op['add']} {unit}"
                + (" (sharing the copied ones' outgoing weights)" if op.get("split") else ""))
    if kind in ("add_skip", "concat_skip"):
        how = "sum" if kind == "add_skip" else "concat"
        return f"add skip ({how}) from layer {op['start']} to layer {op['end']}"
    return None


def describe(op: Any) -> str:
    """One operation in a few plain words, e.g. ``widen conv 5 by 32 filters``; an unknown or
    incomplete one by its name (``mystery move``)."""
    if not isinstance(op, dict):
        return str(op)
    try:
        text = _sentence(op)
    except (KeyError, TypeError):  # an incomplete record: its name is still worth showing
        text = None
    return text or _name(op)


def describe_all(operations: Sequence[Any] | None, none: str = NO_OPERATIONS, sep: str = "; ") -> str:
    """A path of operations in words, ``sep``-separated; ``none`` when there are none."""
    if not operations:
        return none
    return sep.join(describe(op) for op in operations)


def kind_word(op: Any) -> str:
    """One short word for the kind of an operation: ``deeper``, ``wider`` or ``skip``."""
    kind = op.get("op") if isinstance(op, dict) else None
    return KIND_WORDS.get(str(kind), _name(op))
