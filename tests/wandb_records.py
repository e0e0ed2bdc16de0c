"""An offline W&B run as its synced run page will show it, decoded from W&B's own transaction log.

An offline run's ``run-<id>.wandb`` is a LevelDB-style log: a 7-byte header (``:W&B``, the magic 0xBEE1 little
endian, a version byte), then 32 KiB blocks of chunks, each with a 7-byte header (CRC-32 of the chunk type and its
data, little-endian uint32; the data's length, uint16; the type: 1 full, 2 first, 3 middle, 4 last). A chunk never
crosses a block: fewer than 7 bytes left in a block are padding. Each reassembled record is a protobuf ``Record``
(``wandb.proto.wandb_internal_pb2``). Nothing here is W&B's code: a test that reads the log this way checks what
the SDK wrote, not what it meant to write.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK_SIZE = 32 * 1024
HEADER_SIZE = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    """Every record of the log ``path``, in order; a damaged chunk (its CRC) fails the reading."""
    data = Path(path).read_bytes()
    if data[:4] != b":W&B" or data[4:6] != b"\xe1\xbe" or data[6] not in (0, 1):
        raise ValueError(f"{path}: not a W&B transaction log (header {data[:7]!r})")
    records, pending, position = [], b"", HEADER_SIZE
    while position + HEADER_SIZE <= len(data):
        left_in_block = BLOCK_SIZE - position % BLOCK_SIZE
        if left_in_block < HEADER_SIZE:
            position += left_in_block
            continue
        checksum, length, kind = struct.unpack("<IHB", data[position : position + HEADER_SIZE])
        if kind == 0 and length == 0:  # zero padding to the end of the block
            position += left_in_block
            continue
        chunk = data[position + HEADER_SIZE : position + HEADER_SIZE + length]
        if zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != checksum:
            raise ValueError(f"{path}: damaged chunk at byte {position}")
        position += HEADER_SIZE + length
        if kind == FULL:
            records.append(wandb_internal_pb2.Record.FromString(chunk))
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            records.append(wandb_internal_pb2.Record.FromString(pending + chunk))
    return records


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


@dataclass
class OfflineRun:
    """What the run page shows: config, per-step history, summary, metric definitions, files, the run's group,
    job type and tags, its artifacts and its exit code (None: the run did not finish)."""

    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)  # name (or glob) -> MetricRecord
    files: list[str] = field(default_factory=list)
    artifacts: list[Any] = field(default_factory=list)  # ArtifactRecord
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    exit_code: int | None = None

    def history_of(self, key: str) -> list[Any]:
        return [row[key] for row in self.history if key in row]


def read_offline_run(run_dir: Path, wait_s: float = 30.0) -> OfflineRun:
    """The offline run in ``run_dir`` (``.../wandb/offline-run-<date>-<id>``), from its transaction log. W&B's
    service writes the log after the process's ``wandb.finish`` returns: this waits up to ``wait_s`` for the log
    to hold the run's exit record (a run that did not finish is read as it is then)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        logs = list(Path(run_dir).glob("run-*.wandb"))
        try:  # a log being written may end in a partial chunk
            records = read_records(logs[0]) if len(logs) == 1 else []
        except ValueError:
            records = []
        if any(record.WhichOneof("record_type") == "exit" for record in records):
            break
        time.sleep(0.2)
    else:
        logs = list(Path(run_dir).glob("run-*.wandb"))
        if len(logs) != 1:
            raise FileNotFoundError(f"{run_dir}: no single run-*.wandb transaction log ({logs})")
        records = read_records(logs[0])
    run = OfflineRun()
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.group, run.job_type, run.tags = record.run.run_group, record.run.job_type, list(record.run.tags)
            run.config.update({_key(item): json.loads(item.value_json) for item in record.run.config.update})
        elif kind == "config":
            run.config.update({_key(item): json.loads(item.value_json) for item in record.config.update})
        elif kind == "history":
            run.history.append({_key(item): json.loads(item.value_json) for item in record.history.item})
        elif kind == "summary":
            run.summary.update({_key(item): json.loads(item.value_json) for item in record.summary.update})
        elif kind == "metric":
            run.metrics[record.metric.name or record.metric.glob_name] = record.metric
        elif kind == "files":
            run.files += [item.path for item in record.files.files]
        elif kind == "artifact":
            run.artifacts.append(record.artifact)
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run


def offline_run_of(job_dir: Path) -> OfflineRun:
    """The one offline W&B run of a run or job directory."""
    (run_dir,) = (Path(job_dir) / "wandb").glob("offline-run-*")
    return read_offline_run(run_dir)
