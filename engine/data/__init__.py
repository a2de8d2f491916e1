"""Labelled images in: folders, zips and uploads read safely, decoded, reported on, split.

No TensorFlow here. ``sources`` lists files within limits, ``decode`` turns bytes into
pixels, ``report`` counts and warns, ``dataset`` holds the decoded ``Dataset`` and its split,
``ingest`` loads (with a cache) into a ``Dataset``, ``sample`` ships a small built-in set.
"""
