"""CLI: official `model.safetensors` -> orbax checkpoint + config JSON.

  python -m da3_jax.convert --checkpoint model.safetensors --out DIR [--name da3-large]
      [--overwrite]

An existing non-empty DIR is refused unless `--overwrite`, which replaces its config.json +
params/ pair as a whole (`convert.save_converted`).

The variant comes from `--name` or from the `config.json` beside the checkpoint (the Hub
layout). Conversion is strict: any missing, unexpected or mis-shaped key is an error.
"""

from __future__ import annotations

import argparse
import sys

from da3_jax.convert.checkpoint import save_converted
from da3_jax.convert.official import load_official
from da3_jax.model.configs import NAMES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m da3_jax.convert", description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="official model.safetensors")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--name", default=None, choices=NAMES, help="variant (default: from config.json)"
    )
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing converted folder (config.json + params/)")
    args = parser.parse_args(argv)
    try:
        config, params = load_official(args.checkpoint, args.name)
        out = save_converted(args.out, config, params, overwrite=args.overwrite)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"converted {config.name} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
