"""The words a run uses for where it is: trial statuses, run phases and run statuses.

They are str enums, so they are written to JSON as the plain words ("ok", "search",
"running"...) and compare equal to those words when read back from a file; code compares
against the members, never against bare strings.
"""

from __future__ import annotations

from enum import StrEnum


class TrialStatus(StrEnum):
    """How a trial ended (trials.jsonl's ``status``)."""

    OK = "ok"            # trained for at least one epoch and scored (possibly cut short by the budget)
    FAILED = "failed"    # could not be built or trained (no score)
    STOPPED = "stopped"  # ended by the run's stop


class Phase(StrEnum):
    """Where a run is (state.json's ``phase``; the "phase" event sends the middle three)."""

    STARTING = "starting"
    SEED = "seed"
    SEARCH = "search"
    FINAL = "final"
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"


class RunStatus(StrEnum):
    """A run as the pages see it (the snapshot's and summary.json's ``status``)."""

    QUEUED = "queued"            # waiting for a free place (SPROUT_MAX_ACTIVE searches run at once)
    STARTING = "starting"
    RUNNING = "running"
    FINISHING = "finishing"
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # its process ended without a summary (killed, crashed, server gone): resumable


#: statuses of a run that is still working (or waiting to)
ACTIVE = (RunStatus.QUEUED, RunStatus.STARTING, RunStatus.RUNNING, RunStatus.FINISHING)
#: statuses of a run that ended with a summary (and, unless stopped before any trial, a model)
FINISHED = (RunStatus.DONE, RunStatus.STOPPED)
#: phases in which a run searches or finishes (the "phase" event)
WORKING_PHASES = (Phase.SEED, Phase.SEARCH, Phase.FINAL)
