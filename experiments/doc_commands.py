"""Dry-run every ``python -m experiments.main`` command written in the docs.

    python -m experiments.doc_commands README.md experiments/README.md [--json]

Each command's flags are parsed exactly as ``experiments.main`` parses them (``--config`` with
its sweep argument, every ``--config.*`` override), and its train step is lowered with
``train.loop.lower_train_step`` on the command's mesh over simulated CPU devices (abstract
shapes only: no data is read, no parameter allocated). A mesh with a ``-1`` axis is given
twice its fixed axes' product. Prints one JSON line per distinct command with the mesh, the
device count and the per-device bytes of the train state (from the lowered shardings); exits
non-zero on the first command that does not parse or lower. Run in a fresh process: it sets
the simulated device count (64) before jax starts.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import sys

MAX_DEVICES = 64
_CMD = re.compile(r"python -m experiments\.main((?:[^\n`\"\\]|\\\n)*)")


def find_commands(text: str) -> list[list[str]]:
    """The argument lists (``--config=...``, ``--config.x=...``, ``--workdir=...``) of every
    ``python -m experiments.main`` in ``text``; a command ends at a newline (unless continued
    with a backslash), a closing quote or a backtick."""
    out = []
    for m in _CMD.finditer(text):
        args = shlex.split(m.group(1).replace("\\\n", " "))
        args = [a for a in args if a.startswith("--")]
        if args:  # a bare mention of the launcher is not a command
            out.append(args)
    return out


def parse(args: list[str]):
    """ConfigDict of one command, parsed like ``experiments.main``."""
    from absl import flags
    from ml_collections import config_flags

    argv = ["experiments.main", *args]
    fv = flags.FlagValues()
    holder = config_flags.DEFINE_config_file("config", None, "", flag_values=fv, sys_argv=argv)
    flags.DEFINE_string("workdir", None, "", flag_values=fv)
    fv(argv)
    if not fv.workdir:
        raise ValueError(f"command {args}: no --workdir")
    return holder.value


def device_count(config) -> int:
    shape = [int(v) for v in dict(config.get("mesh_shape") or {}).values()]
    fixed = math.prod(v for v in shape if v != -1)
    return fixed * (2 if -1 in shape else 1)


def state_bytes(abstract_state) -> tuple[int, int]:
    """(total bytes, bytes per device) of the train state's ShapeDtypeStructs, from their
    shardings (replicated when they have none)."""
    import jax

    total = per_device = 0
    for leaf in jax.tree.leaves(abstract_state):
        size = leaf.dtype.itemsize
        shard = leaf.shape if leaf.sharding is None else leaf.sharding.shard_shape(leaf.shape)
        total += math.prod(leaf.shape) * size
        per_device += math.prod(shard) * size
    return total, per_device


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    as_json = "--json" in argv
    files = [a for a in argv if a != "--json"]
    os.environ["XLA_FLAGS"] = re.sub(r"--xla_force_host_platform_device_count=\d+", "",
                                     os.environ.get("XLA_FLAGS", ""))
    os.environ["XLA_FLAGS"] += f" --xla_force_host_platform_device_count={MAX_DEVICES}"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax

    from da3_jax.train import loop

    seen = set()
    for path in files:
        with open(path) as f:
            commands = find_commands(f.read())
        for args in commands:
            key = tuple(a for a in args if not a.startswith("--workdir"))
            if key in seen:
                continue
            seen.add(key)
            config = parse(args)
            n = device_count(config)
            if n > MAX_DEVICES:
                raise ValueError(f"{path}: command {args} needs {n} > {MAX_DEVICES} devices")
            _, abstract_state = loop.lower_train_step(config, devices=jax.devices()[:n])
            total, per_device = state_bytes(abstract_state)
            row = {"file": path, "args": list(key), "devices": n,
                   "mesh": {k: int(v) for k, v in dict(config.mesh_shape).items()},
                   "state_bytes": total, "state_bytes_per_device": per_device}
            print(json.dumps(row) if as_json else
                  f"ok {path}: {' '.join(key)} on {n} devices; state "
                  f"{per_device / 2**20:.1f} MiB/device of {total / 2**20:.1f} MiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
