"""Pictures of a search: pure functions from a run snapshot (docs/contracts.md) to Plotly
figures, and from an architecture dict to Graphviz DOT source.

Nothing here imports streamlit or TensorFlow: every function takes plain data (the
snapshot dict that ``engine.search.jobs.Registry.snapshot`` returns, or a part of it) and returns
a ``plotly.graph_objects.Figure`` (or a DOT string), so the pages stay layout-only and the
pictures can be tested without a browser. Operations are read from the trials' structured
``operations`` lists and put in words by :mod:`engine.nas.operations`.

Clickable figures (the search tree, the MDS map) put the trial id of every point in
``customdata`` so ``st.plotly_chart(..., on_select="rerun")`` can tell which network was
clicked (:func:`engine.figures.tree.selected_trial`).

One theme per module; import from the module:

- :mod:`engine.figures.style`: the palette, the common layout, the empty chart and small
  helpers shared by the others (``ok_trials``, ``trial_by_id``, ``fmt_duration``, ``pct``, ...);
- :mod:`engine.figures.tree`: the search tree (``tree_figure``, ``selected_trial``);
- :mod:`engine.figures.search`: edit distances, the MDS map, accuracy curves, progress
  over time, and the Gaussian process's predictions;
- :mod:`engine.figures.results`: confusion matrix, per-class scores, class counts, top
  predictions;
- :mod:`engine.figures.network`: one network as Graphviz DOT (``network_dot``).
- :mod:`engine.figures.race`: two runs of a race, their best so far on one chart (``race_figure``).
"""
