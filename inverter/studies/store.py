"""The results store of studies: SQLite (stdlib), one row per run, safe for several writers.

WAL journal and a busy timeout let two studies write one store at once; every row is its own
transaction, so Ctrl-C or a killed process leaves every finished row and nothing half-written.
A run is keyed by a hash of model content + node + image content + every setting (spec.run_key):
`done` tells a resumed study which runs to skip.
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from converters.errors import UserError
from inverter.studies.spec import CONFIG_FIELDS

STATUSES = ("ok", "failed", "diverged", "interrupted")
FINISHED = ("ok", "diverged")  # a resumed study skips these; "failed" and "interrupted" runs are tried again
COLUMNS = {
    "key": "TEXT PRIMARY KEY", "study": "TEXT", "status": "TEXT NOT NULL", "error": "TEXT",
    "model_path": "TEXT", "model_sha256": "TEXT", "node": "TEXT", "resolved_node": "TEXT",
    "image_path": "TEXT", "image_sha256": "TEXT", "size": "INTEGER", "preset": "TEXT",
    **{f"cfg_{name}": "TEXT" for name in CONFIG_FIELDS},  # every setting (JSON text: numbers, tuples, names)
    "config_json": "TEXT",
    "feature_error": "REAL", "rel_flat": "REAL", "psnr": "REAL", "ssim": "REAL",
    "seconds": "REAL", "batch": "INTEGER", "iterations": "INTEGER", "stopped": "TEXT",
    "device": "TEXT", "worker": "TEXT", "versions": "TEXT", "reconstruction_path": "TEXT",
    "created_utc": "TEXT",
}


class StoreError(UserError):
    """A store that cannot be opened or is not a study store."""


def library_versions() -> dict[str, str]:
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for name in ("invert-onnx", "torch", "onnx", "onnx2torch", "onnxruntime", "numpy", "ray"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


class Store:
    def __init__(self, path: str | Path, create: bool = True, timeout_s: float = 60.0):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise StoreError(f"study store not found: {self.path}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None)  # explicit transactions
            self.db.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            self._schema(create)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot use {self.path} as a study store: {exc}; choose another store path") from None

    @property
    def images_dir(self) -> Path:
        return self.path.parent / f"{self.path.stem}_images"

    def _schema(self, create: bool) -> None:
        have = {r[1] for r in self.db.execute("PRAGMA table_info(runs)")}
        if not have and not create:
            raise StoreError(f"{self.path} holds no study runs (no table 'runs')")
        if have and "key" not in have:
            raise StoreError(f"{self.path} is not a study store")
        self.db.execute("BEGIN IMMEDIATE")  # two studies opening a new store at once: one makes the table
        try:
            cols = ", ".join(f"{k} {v}" for k, v in COLUMNS.items())
            self.db.execute(f"CREATE TABLE IF NOT EXISTS runs ({cols})")
            have = {r[1] for r in self.db.execute("PRAGMA table_info(runs)")}
            for name, kind in COLUMNS.items():  # a store written by an older version gains the new columns
                if name not in have:
                    self.db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind.replace(' PRIMARY KEY', '')}")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def done(self, keys: list[str] | None = None) -> set[str]:
        """Keys of runs that finished (ok or diverged): a resumed study skips them."""
        marks = ",".join("?" * len(FINISHED))
        rows = self.db.execute(f"SELECT key FROM runs WHERE status IN ({marks})", FINISHED).fetchall()
        found = {r[0] for r in rows}
        return found if keys is None else found & set(keys)

    def write(self, row: dict) -> None:
        """One run, one transaction (an existing row of the same key is replaced)."""
        if row.get("status") not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {row.get('status')!r}")
        config = row.get("config") or {}
        values = {k: v for k, v in row.items() if k in COLUMNS}
        values.update({f"cfg_{k}": json.dumps(v) for k, v in config.items() if f"cfg_{k}" in COLUMNS})
        values["config_json"] = json.dumps(config, sort_keys=True)
        values.setdefault("created_utc", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        if isinstance(values.get("versions"), dict):
            values["versions"] = json.dumps(values["versions"], sort_keys=True)
        names = list(values)
        sql = f"INSERT OR REPLACE INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute(sql, [values[n] for n in names])
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def rows(self, where: str = "", params: tuple = ()) -> list[dict]:
        cur = self.db.execute(f"SELECT * FROM runs {where} ORDER BY model_path, node, image_path, config_json", params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
