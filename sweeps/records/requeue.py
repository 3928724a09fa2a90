"""A re-queued trial's link to the trial it continues.

When a sweep is recovered from its own records (sweeps/execution/recovery.py), a trial that was running
is run again by a new Ray trial, with a new Ray trial id. Its config carries one extra key,
REQUEUED, naming the trial it continues and that trial's last checkpoint. Through it the
trainable continues from that checkpoint, and the recorder keeps writing to the same MLflow
child run and the same trials.parquet row: the trial keeps its identity.
"""

from __future__ import annotations

REQUEUED = "requeued"   # config key: {"trial_id": the original trial id, "checkpoint": its last checkpoint}


def trial_params(config: dict) -> dict:
    """The config the trial trains with: the link, if any, removed."""
    return {k: v for k, v in config.items() if k != REQUEUED}


def identity(trial_id: str, config: dict) -> str:
    """The id a trial is known by in the sweep's records: the original one for a re-queued trial."""
    return (config.get(REQUEUED) or {}).get("trial_id") or trial_id


def requeued_checkpoint(config: dict) -> str | None:
    """The checkpoint a re-queued trial continues from (None: from scratch, or not re-queued)."""
    return (config.get(REQUEUED) or {}).get("checkpoint")
