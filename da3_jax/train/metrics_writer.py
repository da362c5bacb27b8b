"""Host-0 metric writer: TensorBoard event files (tensorboardX) + a JSONL log + a console line.

Only process 0 writes (every host computes the same replicated scalars). Throughput
(``steps_per_sec``, ``examples_per_sec``) is measured between consecutive ``throughput`` calls.

``logdir`` is any ``etils.epath`` path (``gs://`` included). For a remote URL the TensorBoard
event file is written through ``etils.epath`` as well (``_EpathRecordWriter``, registered with
tensorboardX for that URL scheme), so every file of a run goes through one path library.

On a resume (``resume_step``) the rows logged after the restored step, which the resumed run
is about to log again, are dropped from ``<prefix>_metrics.jsonl`` (the kept rows go to a
temporary file that replaces the log), and TensorBoard is told to purge its events after that
step, so no step is logged twice.
"""

from __future__ import annotations

import io
import json
import time

import jax
import numpy as np
from etils import epath


class MetricWriter:
    """``write(step, metrics)`` -> TensorBoard scalars + JSONL + console; ``close()`` flushes."""

    def __init__(self, logdir, prefix: str = "train", echo=print, resume_step: int | None = None):
        self.is_host0 = jax.process_index() == 0
        self.prefix = prefix
        self.echo = echo
        self._tb = None
        self._jsonl = None
        if self.is_host0:
            from tensorboardX import SummaryWriter

            logdir = epath.Path(logdir)
            if "://" in str(logdir):
                _register_epath_writer(str(logdir).split("://")[0])
            logdir.mkdir(parents=True, exist_ok=True)
            path = logdir / f"{prefix}_metrics.jsonl"
            if resume_step is not None and path.exists():
                _truncate_after(path, int(resume_step))
            purge = None if not resume_step else int(resume_step) + 1
            self._tb = SummaryWriter(logdir=str(logdir), purge_step=purge)
            self._jsonl = path.open("a")
        self._last = None  # (time, step)

    def throughput(self, step: int, batch_size: int) -> dict[str, float]:
        """Steps/s and examples/s since the previous call (empty on the first call)."""
        now = time.perf_counter()
        out = {}
        if self._last is not None and step > self._last[1]:
            dt = max(now - self._last[0], 1e-9)
            out = {"steps_per_sec": (step - self._last[1]) / dt}
            out["examples_per_sec"] = out["steps_per_sec"] * batch_size
        self._last = (now, step)
        return out

    def write(self, step: int, metrics: dict, prefix: str | None = None) -> dict[str, float]:
        """Writes scalar metrics (device arrays are fetched); returns them as floats."""
        prefix = prefix or self.prefix
        scalars = {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}
        if self.is_host0:
            for k, v in scalars.items():
                self._tb.add_scalar(f"{prefix}/{k}", v, step)
            self._jsonl.write(json.dumps({"step": int(step), "prefix": prefix, **scalars}) + "\n")
            self._jsonl.flush()
            if self.echo is not None:
                body = " ".join(f"{k}={v:.4g}" for k, v in sorted(scalars.items()))
                self.echo(f"[{prefix} {step}] {body}")
        return scalars

    def close(self):
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._jsonl.close()
            self._tb = None


def _truncate_after(path: epath.Path, step: int) -> None:
    """Keep the JSONL rows with ``step <= step`` (and drop a torn last line)."""
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill mid-write
            continue
        if int(row.get("step", 0)) <= step:
            kept.append(line)
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text("".join(f"{x}\n" for x in kept))
    tmp.replace(path)


class _EpathRecordWriter:
    """tensorboardX record writer for remote URLs: buffers the event file and rewrites the
    whole object through ``etils.epath`` on each flush (object stores have no append)."""

    def __init__(self, path: str):
        self.path = epath.Path(path)
        self.buffer = io.BytesIO()

    def write(self, data: bytes) -> None:
        self.buffer.write(data)

    def flush(self) -> None:
        self.path.write_bytes(self.buffer.getvalue())

    def close(self) -> None:
        self.flush()


class _EpathWriterFactory:
    def open(self, path: str) -> _EpathRecordWriter:
        return _EpathRecordWriter(path)

    def directory_check(self, path: str) -> None:
        epath.Path(path).mkdir(parents=True, exist_ok=True)


def _register_epath_writer(scheme: str) -> None:
    from tensorboardX import record_writer

    record_writer.register_writer_factory(scheme, _EpathWriterFactory())
