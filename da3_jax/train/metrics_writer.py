"""Host-0 metric writer: TensorBoard event files (tensorboardX) + a console line per log step.

Only process 0 writes (every host computes the same replicated scalars). Throughput
(``steps_per_sec``, ``examples_per_sec``) is measured between consecutive ``write`` calls.
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np


class MetricWriter:
    """``write(step, metrics)`` -> TensorBoard scalars + console; ``close()`` flushes."""

    def __init__(self, logdir: str, prefix: str = "train", echo=print):
        self.is_host0 = jax.process_index() == 0
        self.prefix = prefix
        self.echo = echo
        self._tb = None
        if self.is_host0:
            from tensorboardX import SummaryWriter

            os.makedirs(logdir, exist_ok=True)
            self._tb = SummaryWriter(logdir=logdir)
            self._jsonl = open(os.path.join(logdir, f"{prefix}_metrics.jsonl"), "a")
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
