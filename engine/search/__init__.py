"""A search run: its loop and phases (prepare, trials, final), its clock (budget), its
folder on disk, and the background jobs and snapshots that the app reads.
"""
