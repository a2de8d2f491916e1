"""Sprout's engine: neural architecture search by network morphism, guided by a
Gaussian process (see DESIGN.md). It never imports streamlit, and it keeps TensorFlow
out of every code path that does not build or train a model.
"""

__version__ = "0.1.0"
