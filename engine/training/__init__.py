"""Training one network: the only package that imports TensorFlow and Keras.

``device`` sets up the backend, ``model`` builds a Keras model from an architecture,
``batches`` feeds it, ``trainer`` trains one trial, ``evaluation`` scores it, ``recipe``
chooses the training settings from the data, and ``export`` writes the formats users take home.
"""
