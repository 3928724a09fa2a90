"""The sweep's results table: one row per trial, in a Parquet file rewritten atomically.

A Parquet file cannot be appended to, and rewriting it whole after every trial costs the driver
time in proportion to the trials before (measured: benchmarks/driver_scale.py). The sweep's own
table is therefore `batched`: each row goes first to a journal beside the file (one JSON line,
appended: a kill loses nothing written), and the Parquet file is rewritten only when at least
REWRITE_EVERY times the last rewrite's duration has passed, so rewriting costs at most about
1/REWRITE_EVERY of the driver's time however long the sweep. Loading replays the journal over the
file; a rewrite then clears the journal (a kill in between replays rows already written: same rows).

Rows are heterogeneous (conditional config keys, metrics missing from failed trials),
so the schema is rebuilt from the rows on every write instead of being declared.
Columns whose values Parquet cannot hold as one plain type (mixed str/number,
lists, dicts) are stored as JSON text and marked in the field metadata, so that
`read_table` gives back exactly what was written.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sweeps.records.folder import STEPS, TRIALS
from weightmom.errors import UsageError, require
from weightmom.files import atomic_write

MODEL_FILE = "model.pt"   # in a trial's checkpoint folder: the sparse pruned model (checkpoint_path column)
# One name per concept, in MLflow and in the tables: a metric keeps its plain name (`density` is the density a
# trial reached); a config key that would share that name is recorded as what was asked for.
_RECORDED_NAMES = {"density": "target_density"}

_ENCODING = b"weightmom.encoding"
_JSON = b"json"
_MAX_EXACT_INT = 2**53  # ints beyond this are not exact in float64
REWRITE_EVERY = 20.0    # a batched table is rewritten after 20x its last rewrite's duration: under 5% of the time


class ResultsTable:
    """One row per trial, keyed by trial_id, persisted as Parquet after every change.

    The file is replaced atomically, so a crash loses nothing already written, and a
    resumed sweep reloads the rows and replaces (never duplicates) a re-reported trial.
    """

    def __init__(self, path: str | Path, batched: bool = False):
        self.path = Path(path)
        self.journal = journal_path(self.path)
        self.batched = batched
        self._rows: dict[str, dict] = {}
        self._written_at, self._write_s, self._dirty = 0.0, 0.0, False
        if self.path.exists():
            for row in read_table(self.path):
                self._rows[_key(row)] = row
        for row in read_journal(self.journal):
            self._rows[_key(row)] = row
            self._dirty = True

    def upsert(self, row: dict) -> None:
        """Insert the row, or replace the one with the same trial_id (keeping its position)."""
        self._rows[_key(row)] = dict(row)
        self._dirty = True
        if not self.batched:
            self.flush()
            return
        append_journal(self.journal, row)
        if time.monotonic() - self._written_at >= REWRITE_EVERY * self._write_s:
            self.flush()

    def flush(self) -> None:
        """Rewrite the Parquet file if rows are only in the journal (or in memory), then clear the journal."""
        if not self._dirty:
            return
        start = time.monotonic()
        write_rows(self.path, list(self._rows.values()))
        if self.journal.exists():
            os.unlink(self.journal)
        self._written_at, self._dirty = time.monotonic(), False
        self._write_s = self._written_at - start

    def row(self, trial_id: str) -> dict:
        """A copy of one trial's row."""
        return dict(self._rows[str(trial_id)])

    def rows(self) -> list[dict]:
        """Copies of the rows in first-insertion order."""
        return [dict(row) for row in self._rows.values()]

    def __len__(self) -> int:
        return len(self._rows)


def sweep_rows(folder: str | Path, required: bool = True) -> list[dict]:
    """A sweep folder's rows as its books reconcile them: trials.parquet with its journal replayed over it.

    Each trial once, the journal's newer row winning, exactly as the driver's own table loads them: so
    `pareto`, `best`, `export` and `table` see the rows of a running sweep, or of a killed driver, that are
    still only in the journal. A rewrite between reading the file and its journal (which the rewrite
    empties) would lose rows, so the read is repeated when the file changed under it. With neither file:
    UsageError naming trials.parquet, or [] when not `required`.
    """
    path = Path(folder) / TRIALS
    table = _settled_table(path)
    require(not required or len(table) > 0 or path.is_file() or table.journal.is_file(),
            f"{path}: no such results file")
    return table.rows()


def sweep_points(folder: str | Path, required: bool = True) -> list[dict]:
    """Every front candidate of a sweep folder: each trial's row (`sweep_rows`) and each finished step of a chain
    but its last (steps.parquet, its journal replayed the same way): what `pareto`, `best` and `export` choose
    from. Count trials with `sweep_rows`."""
    steps = Path(folder) / STEPS
    return sweep_rows(folder, required) + _settled_table(steps).rows()


def is_step(row: dict) -> bool:
    """Whether a row is a chain step's of steps.parquet (a trial's own row is its trial's)."""
    return row.get("chain_of") not in (None, row.get("trial_id"))


def _settled_table(path: Path) -> ResultsTable:
    """The table at `path` with its journal, read again when a rewrite changed the file under the read."""
    for _ in range(5):
        before = _identity(path)
        table = ResultsTable(path)
        if _identity(path) == before:
            break
    return table


def _identity(path: Path) -> tuple[int, int] | None:
    """Which version of a file this is: an atomic rewrite makes a new inode."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def journal_path(path: Path) -> Path:
    """trials.parquet's journal: trials.journal.jsonl."""
    return path.with_name(f"{path.stem}.journal.jsonl")


def append_journal(journal: Path, row: dict) -> None:
    """Append one row as one JSON line, in one write: a killed driver leaves whole lines, or a torn last one."""
    with open(journal, "a") as sink:
        sink.write(_to_json(row) + "\n")


def read_journal(path: Path) -> list[dict]:
    """The journal's rows; a last line torn by a kill mid-write is skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def recorded_name(config_key: str) -> str:
    """A TrainConfig key (`density`, `pruner.window`) as MLflow params and config.* columns name it."""
    return _RECORDED_NAMES.get(config_key, config_key)


def config_key(recorded: str) -> str:
    """The TrainConfig key behind a recorded name: the inverse of recorded_name."""
    return next((key for key, name in _RECORDED_NAMES.items() if name == recorded), recorded)


def _key(row: dict) -> str:
    trial_id = row.get("trial_id")
    require(trial_id is not None and trial_id != "", f"results row without a trial_id: keys {sorted(row)}")
    return str(trial_id)


def read_table(path: str | Path) -> list[dict]:
    """The rows of a trials.parquet file, with JSON-encoded columns decoded."""
    path = Path(path)
    require(path.is_file(), f"{path}: no such results file")
    try:   # ParquetFile, not pq.read_table: that one loads pyarrow.dataset and pandas, 0.6 s of a command's time
        table = pq.ParquetFile(path).read()
    except (OSError, pa.ArrowException) as exc:
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"{path}: not a readable Parquet file ({first_line})") from None
    rows = table.to_pylist()
    for field in table.schema:
        if (field.metadata or {}).get(_ENCODING) == _JSON:
            for row in rows:
                if row[field.name] is not None:
                    row[field.name] = json.loads(row[field.name])
    return rows


def write_rows(path: str | Path, rows: list[dict]) -> None:
    """Write rows atomically as Parquet; the union of their keys, in order of first appearance."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = to_arrow(rows)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def to_arrow(rows: list[dict]) -> pa.Table:
    """An Arrow table of heterogeneous rows: missing keys are nulls and no value is lost."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    fields, arrays = [], []
    for name in names:
        require(isinstance(name, str), f"results column {name!r}: column names must be strings")
        values = [_plain(row.get(name)) for row in rows]
        field, array = _column(name, values)
        fields.append(field)
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _plain(value: object) -> object:
    """NumPy scalars (metrics often are) as the Python values Arrow and JSON understand."""
    return value.item() if isinstance(value, np.generic) else value


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if -(2**63) <= value < 2**63 else "other"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "other"


def _column(name: str, values: list) -> tuple[pa.Field, pa.Array]:
    """The narrowest plain Arrow type that holds every value exactly, else JSON text."""
    kinds = {_kind(v) for v in values if v is not None}
    if not kinds or kinds == {"str"}:
        return pa.field(name, pa.string()), pa.array(values, type=pa.string())
    if kinds == {"bool"}:
        return pa.field(name, pa.bool_()), pa.array(values, type=pa.bool_())
    if kinds == {"int"}:
        return pa.field(name, pa.int64()), pa.array(values, type=pa.int64())
    if kinds <= {"int", "float"} and all(abs(v) <= _MAX_EXACT_INT for v in _ints(values)):
        floats = [None if v is None else float(v) for v in values]
        return pa.field(name, pa.float64()), pa.array(floats, type=pa.float64())
    encoded = [None if v is None else _to_json(v) for v in values]
    field = pa.field(name, pa.string(), metadata={_ENCODING: _JSON})
    return field, pa.array(encoded, type=pa.string())


def _ints(values: Iterable[object]) -> Iterable[int]:
    return (v for v in values if isinstance(v, int) and not isinstance(v, bool))


def _to_json(value: object) -> str:
    """Python's JSON keeps NaN and inf; objects JSON has no type for fall back to their str()."""
    return json.dumps(value, default=_json_default, allow_nan=True)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, Path):
        return str(value)
    return str(value)
