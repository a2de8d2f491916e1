"""The search method (DESIGN.md): architectures as data, morphisms that edit them, the edit
distance between them, the Gaussian process over them and the searchers that propose.

Pure NumPy and SciPy: nothing here imports TensorFlow or Keras, so the searchers can be
tested and simulated without training a network.
"""
