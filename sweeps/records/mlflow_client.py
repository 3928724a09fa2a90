"""MLflow calls that never kill a sweep.

Each call is tried a few times; if the tracking server still fails, the call
is queued (in memory and in a JSON-lines file beside the results) and replayed,
in order, before the next call. A sweep that outlives a server restart loses
no metric; what could never be sent stays on disk and is reported.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from urllib.parse import urlparse

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sweeps.records.folder import MLFLOW_DB
from weightmom.errors import UsageError
from weightmom.files import atomic_write

log = logging.getLogger(__name__)

# MLflow's own HTTP retries back off for minutes; a sweep would stall. We retry ourselves.
# It also prints a "View run" line per run it ends: noise in a sweep's progress output.
HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


def default_tracking_uri(out: Path) -> str:
    """An embedded sqlite store in the sweep folder (MLflow 3's file store refuses to start)."""
    return f"sqlite:///{out.resolve() / MLFLOW_DB}"


def check_reachable(uri: str) -> None:
    """Fail before any trial starts when a tracking server is given but cannot be reached."""
    if urlparse(uri).scheme not in ("http", "https"):
        return
    old = {k: os.environ.get(k) for k in HTTP_SETTINGS}
    os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"})
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as err:  # connection refused, DNS, HTTP errors: all mean "not usable"
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise UsageError(f"cannot reach the MLflow tracking server at {uri}: {reason}") from None
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _Rejected(Exception):
    """A write the server refused for good (bad value, deleted run)."""


class ResilientClient:
    """The few MlflowClient writes a sweep needs, with retries and a replay queue.

    After a call fails for good, the server is left alone for `cooldown` seconds: writes go
    straight to the queue and reads return None, so an outage does not stall the driver (and
    with it every trial waiting to report) for seconds per write.
    """

    def __init__(self, uri: str, pending_file: Path, attempts: int = 3, backoff: float = 0.5,
                 cooldown: float = 10.0) -> None:
        for key, value in HTTP_SETTINGS.items():
            os.environ.setdefault(key, value)
        self.client = MlflowClient(uri)
        self.pending_file = pending_file
        self.attempts = attempts
        self.backoff = backoff
        self.cooldown = cooldown
        self._down_until = 0.0
        self.pending: list[dict] = []
        if pending_file.exists():
            self.pending = [json.loads(line) for line in pending_file.read_text().splitlines() if line]

    # -- reads and run creation: needed now, so retried but not queued ---------------------
    def retry(self, fn, *args, **kwargs):
        if time.monotonic() < self._down_until:
            return None
        for attempt in range(self.attempts):
            try:
                return fn(*args, **kwargs)
            except _Rejected:
                raise
            except Exception as err:
                if attempt == self.attempts - 1:
                    log.warning("MLflow call %s failed: %s", getattr(fn, "__name__", fn), err)
                    self._down_until = time.monotonic() + self.cooldown
                    return None
                time.sleep(self.backoff * 2 ** attempt)

    # -- writes: queued when they fail -----------------------------------------------------
    def log_batch(self, run_id: str, metrics: list[tuple[str, float, int, int]] = (),
                  params: dict | None = None, tags: dict | None = None) -> None:
        self._send({"op": "log_batch", "run_id": run_id, "metrics": [list(m) for m in metrics],
                    "params": {k: str(v)[:6000] for k, v in (params or {}).items()},
                    "tags": {k: str(v)[:5000] for k, v in (tags or {}).items()}})

    def set_terminated(self, run_id: str, status: str) -> None:
        self._send({"op": "set_terminated", "run_id": run_id, "status": status})

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        self._send({"op": "log_artifact", "run_id": run_id, "local_path": local_path, "artifact_path": artifact_path})

    def flush(self, force: bool = False) -> int:
        """Replay queued writes in order; returns how many are still unsent. `force` ignores the cooldown."""
        if force:
            self._down_until = 0.0
        while self.pending:
            if not self._try(self.pending[0]):
                break
            self.pending.pop(0)
            self._save_pending()
        return len(self.pending)

    def _send(self, op: dict) -> None:
        if self.flush() == 0 and self._try(op):
            return
        self.pending.append(op)
        self._save_pending()

    def _try(self, op: dict) -> bool:
        try:
            return self.retry(self._execute_or_reject, op) is not None
        except _Rejected as err:  # the server answered "never": retrying cannot help
            log.warning("MLflow rejected %s for run %s: %s", op["op"], op.get("run_id"), err)
            return True

    def _execute_or_reject(self, op: dict) -> bool:
        try:
            return self._execute(op)
        except MlflowException as err:
            if err.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "BAD_REQUEST"):
                raise _Rejected(str(err).splitlines()[0]) from None
            raise

    def _execute(self, op: dict) -> bool:
        if op["op"] == "log_batch":
            self.client.log_batch(
                op["run_id"], metrics=[Metric(k, v, ts, step) for k, v, ts, step in op["metrics"]],
                params=[Param(k, v) for k, v in op["params"].items()],
                tags=[RunTag(k, v) for k, v in op["tags"].items()])
        elif op["op"] == "set_terminated":
            self.client.set_terminated(op["run_id"], op["status"])
        elif op["op"] == "log_artifact":
            self.client.log_artifact(op["run_id"], op["local_path"], op["artifact_path"])
        return True

    def _save_pending(self) -> None:
        if self.pending or self.pending_file.exists():
            text = "".join(json.dumps(op) + "\n" for op in self.pending)
            atomic_write(self.pending_file, lambda tmp: Path(tmp).write_text(text))
