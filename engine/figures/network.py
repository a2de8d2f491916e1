"""One network, layer by layer, as Graphviz DOT source for ``st.graphviz_chart``, and the
skip edges read back from it."""

from __future__ import annotations

from typing import Sequence

from engine.figures.style import INK, KIND_STYLE


def layer_label(layer: dict, shape: Sequence[int] | None = None) -> str:
    """What a box in the network drawing says, e.g. ``Conv 3×3 · 32`` and the output shape."""
    kind, cfg = layer.get("kind", "?"), layer.get("config") or {}
    name = KIND_STYLE.get(kind, ("#f1f3f5", kind))[1]
    if kind == "conv":
        k = cfg.get("kernel", 3)
        text = f"Conv {k}×{k} · {cfg.get('filters', '?')}"
        if cfg.get("stride", 1) != 1:
            text += f" /{cfg['stride']}"
    elif kind == "dense":
        text = f"Dense · {cfg.get('units', '?')}"
    elif kind == "dropout":
        text = f"Dropout {cfg.get('rate', 0):.0%}" if isinstance(cfg.get("rate"), (int, float)) else "Dropout"
    else:
        text = name
    if shape:
        text += "\n" + "×".join(str(int(s)) for s in shape)
    return text


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def network_dot(arch: dict, rankdir: str = "TB", title: str | None = None,
                marks: dict[int, str] | None = None) -> str:
    """Graphviz DOT source drawing one network layer by layer, for ``st.graphviz_chart``.

    ``arch`` is ``Architecture.to_dict()``. Main-chain layers are joined by solid arrows;
    the layers of skip connections (their poolings, 1x1 convolutions, the Add/Concatenate
    merge) are drawn with dashed purple arrows, and each merge notes which main-chain layers
    the skip joins. ``marks`` (layer id -> colour) outlines those layers thickly in that colour.
    """
    marks = marks or {}
    layers = list(arch.get("layers") or [])
    shapes: dict[int, tuple[int, ...]] = {}
    try:
        from engine.nas.architecture import Architecture

        shapes = Architecture.from_dict(arch).shapes()
    except Exception:  # noqa: BLE001 - a drawing must not fail on a shape it cannot work out
        in_shape = arch.get("input_shape")
        shapes = {0: tuple(in_shape)} if in_shape else {}
    roles = {int(layer["id"]): layer.get("role", "main") for layer in layers}
    lines = [
        "digraph network {",
        f'  graph [rankdir={rankdir}, nodesep=0.25, ranksep=0.22, bgcolor="transparent", fontname="Helvetica"'
        + (f', label="{_dot_escape(title)}", labelloc=t, fontsize=14' if title else "") + "];",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, height=0.32, '
        f'margin="0.12,0.04", color="#868e96", fontcolor="{INK}"];',
        '  edge [color="#868e96", arrowsize=0.6];',
    ]
    in_shape = shapes.get(0) or tuple(arch.get("input_shape") or ())
    in_label = "Image" + ("\n" + "×".join(str(int(s)) for s in in_shape) if in_shape else "")
    lines.append(f'  n0 [label="{_dot_escape(in_label)}", fillcolor="{KIND_STYLE["input"][0]}", shape=oval];')
    for layer in layers:
        lid, kind = int(layer["id"]), layer.get("kind", "?")
        fill = KIND_STYLE.get(kind, ("#f1f3f5", kind))[0]
        label = layer_label(layer, shapes.get(lid))
        cfg = layer.get("config") or {}
        extra = ""
        if kind in ("add", "concat"):
            extra = ', shape=oval, color="#ae3ec9", penwidth=1.5'
        elif roles.get(lid) == "skip":
            extra = ', color="#ae3ec9", style="rounded,filled,dashed"'
        if kind in ("add", "concat") and "start" in cfg and "end" in cfg:
            label += f"\nskip {cfg['start']}→{cfg['end']}"
        if lid in marks:
            extra += f', color="{marks[lid]}", penwidth=3.5'
        lines.append(f'  n{lid} [label="{_dot_escape(label)}", fillcolor="{fill}"{extra}];')
    for layer in layers:
        lid = int(layer["id"])
        for src in layer.get("inputs", []):
            src = int(src)
            skip = roles.get(lid) == "skip" or roles.get(src, "main") == "skip"
            style = ' [style=dashed, color="#ae3ec9"]' if skip else ""
            lines.append(f"  n{src} -> n{lid}{style};")
    lines.append("}")
    return "\n".join(lines)


def skip_edges(dot: str) -> list[tuple[int, int]]:
    """The dashed (skip) edges of a DOT string from :func:`network_dot`, as (from, to) layer ids."""
    out = []
    for line in dot.splitlines():
        line = line.strip()
        if "->" in line and "dashed" in line:
            a, b = line.split("->")
            out.append((int(a.strip()[1:]), int(b.split("[")[0].strip().rstrip(";")[1:])))
    return out
