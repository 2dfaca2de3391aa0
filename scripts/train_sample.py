"""Train the sample model's checkpoints (digits-cnn, digits-cnn-early) again, as dossier did for
the weights it ships.

    .venv/bin/python scripts/train_sample.py [--seed 0] [--out DIR]

Training is deterministic on one machine; another machine may end on other bits (floating-point
order differs between CPUs), so the shipped files, not a fresh training, are what make every
machine's `make demo` equal the committed sample. Prints the SHA-256 of each checkpoint it
trained and, for seed 0, whether it equals the shipped weights.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import torch

from dossier.manifest import file_sha256
from dossier.sample import CHECKPOINTS, SHIPPED_SEED, SHIPPED_SHA256, train_digits_cnn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=SHIPPED_SEED)
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for NAME-seedS.pt")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, epoch in CHECKPOINTS.items():
        model = train_digits_cnn(args.seed, stop_after=epoch)
        out = args.out / f"{name}-seed{args.seed}.pt"
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        out.write_bytes(buffer.getvalue())
        digest = file_sha256(out)
        print(f"{out}: sha256 {digest}")
        if args.seed == SHIPPED_SEED:
            same = digest == SHIPPED_SHA256[name]
            print("  equals the shipped weights" if same else "  differs from the shipped weights (another machine?)")


if __name__ == "__main__":
    main()
