"""Every ``python -m experiments.main`` command in README.md and experiments/README.md parses
and its train step lowers on its own mesh (up to 64 simulated devices, abstract shapes only),
with the train state sharded as the mesh says."""

import json
import os
import pathlib
import subprocess
import sys

from experiments.doc_commands import find_commands

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ["README.md", "experiments/README.md"]


def test_find_commands_joins_continuations_and_stops_at_quotes():
    text = ('x `python -m experiments.main --config=a.py:v=1 \\\n    --workdir=w --config.b=2`\n'
            '--command="cd d && python -m experiments.main --config=c.py --workdir=gs://b/r"\n'
            'the launcher `python -m experiments.main` alone\n')
    assert find_commands(text) == [["--config=a.py:v=1", "--workdir=w", "--config.b=2"],
                                   ["--config=c.py", "--workdir=gs://b/r"]]


def test_every_documented_launch_command_lowers():
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-m", "experiments.doc_commands", *DOCS, "--json"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    rows = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
    documented = {tuple(a for a in c if not a.startswith("--workdir"))
                  for d in DOCS for c in find_commands((ROOT / d).read_text())}
    assert {tuple(r["args"]) for r in rows} == documented and len(documented) >= 5
    for r in rows:
        shards = max(r["mesh"]["fsdp"], 1)
        assert r["state_bytes_per_device"] <= r["state_bytes"], r
        if r["state_bytes"] > 2**30:  # accelerator configs: the state per device ~ total / fsdp
            assert r["state_bytes_per_device"] <= 1.2 * r["state_bytes"] / shards, r
    assert any(r["mesh"]["fsdp"] == 16 and r["devices"] == 64 for r in rows)
