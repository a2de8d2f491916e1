"""Pictures of a search: pure functions from a run snapshot (docs/contracts.md) to Plotly
figures, and from an architecture dict to Graphviz DOT source.

Nothing here imports streamlit or TensorFlow: every function takes plain data (the
snapshot dict that ``engine.search.jobs.Registry.snapshot`` returns, or a part of it) and returns
a ``plotly.graph_objects.Figure`` (or a DOT string), so the pages stay layout-only and the
pictures can be tested without a browser.

Clickable figures (the search tree, the MDS map) put the trial id of every point in
``customdata`` so ``st.plotly_chart(..., on_select="rerun")`` can tell which network was
clicked (:func:`selected_trial`).

One theme per module, all re-exported here, so ``figures.<name>`` is the way to use them:

- :mod:`~engine.figures.style`: the palette, the common layout, the empty chart and small
  helpers shared by the others (``ok_trials``, ``trial_by_id``, ``fmt_duration``);
- :mod:`~engine.figures.tree`: the search tree (``tree_figure``, ``selected_trial``);
- :mod:`~engine.figures.search`: kernel distances, the MDS map, accuracy curves, progress
  over time, and the Gaussian process's predictions;
- :mod:`~engine.figures.results`: confusion matrix, per-class scores, class counts, top
  predictions;
- :mod:`~engine.figures.network`: one network as Graphviz DOT (``network_dot``).
"""

from __future__ import annotations

from engine.figures.network import layer_label, network_dot, skip_edges
from engine.figures.results import (class_counts_figure, confusion_figure, per_class_figure,
                                    top_predictions_figure)
from engine.figures.search import (MAX_CURVES, classical_mds, curves_figure, distance_heatmap, mds_figure,
                                   prediction_figure, progress_figure)
from engine.figures.style import (ACCURACY_SCALE, AMBER, CORAL, DARK_GREEN, FONT, GREEN, GREY, GRID, INK,
                                  KIND_STYLE, LEAF, empty_figure, fmt_duration, ok_trials, trial_by_id)
from engine.figures.tree import (FINAL, MAX_EDGE_LABELS, ROOT, selected_trial, short_label, tree_figure, tree_graph, tree_positions)

# The private helpers stay importable from here, as they were from the single module this package replaced.
from engine.figures.network import _dot_escape  # noqa: F401
from engine.figures.style import _accuracy_range, _layout, _pct, _scale_colour, _trial_hover  # noqa: F401

__all__ = [
    # style
    "GREEN", "DARK_GREEN", "LEAF", "AMBER", "CORAL", "GREY", "INK", "GRID", "FONT", "ACCURACY_SCALE",
    "KIND_STYLE", "empty_figure", "ok_trials", "trial_by_id", "fmt_duration",
    # tree
    "ROOT", "FINAL", "MAX_EDGE_LABELS", "short_label", "selected_trial",
    "tree_graph", "tree_positions", "tree_figure",
    # search
    "MAX_CURVES", "distance_heatmap", "classical_mds", "mds_figure", "curves_figure", "progress_figure",
    "prediction_figure",
    # results
    "confusion_figure", "per_class_figure", "class_counts_figure", "top_predictions_figure",
    # network
    "layer_label", "network_dot", "skip_edges",
]
