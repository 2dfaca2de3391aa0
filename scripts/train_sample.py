"""Train the sample model (digits-cnn) again, as dossier did for the weights it ships.

    .venv/bin/python scripts/train_sample.py [--seed 0] [--out FILE]

Training is deterministic on one machine; another machine may end on other bits (floating-point
order differs between CPUs), so the shipped file, not a fresh training, is what makes every
machine's `make demo` equal the committed sample. Prints the SHA-256 of what it trained and, for
seed 0, whether it equals the shipped weights.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import torch

from dossier.manifest import file_sha256
from dossier.sample import SHIPPED_SEED, SHIPPED_SHA256, train_digits_cnn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=SHIPPED_SEED)
    parser.add_argument("--out", type=Path, default=Path("digits-cnn.pt"))
    args = parser.parse_args()
    model = train_digits_cnn(args.seed)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    args.out.write_bytes(buffer.getvalue())
    digest = file_sha256(args.out)
    print(f"{args.out}: sha256 {digest}")
    if args.seed == SHIPPED_SEED:
        print("equals the shipped weights" if digest == SHIPPED_SHA256 else "differs from the shipped weights (another machine)")


if __name__ == "__main__":
    main()
