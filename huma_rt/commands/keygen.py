"""``huma-rt keygen -o KEY``: an ed25519 key pair for signed bundles.

Writes KEY (private, PEM PKCS#8, mode 0600: give it to ``huma-rt pack --sign KEY``) and
KEY.pub (public, PEM: give it to ``Avatar.load(..., trusted_keys=["KEY.pub"])``). Equivalent
with OpenSSL: ``openssl genpkey -algorithm ed25519 -out KEY`` and
``openssl pkey -in KEY -pubout -out KEY.pub``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", type=Path, required=True, help="private key file (the public key goes to OUTPUT.pub)")
    p.add_argument("--force", action="store_true", help="replace existing key files")


def run(args: argparse.Namespace) -> int:
    from huma_rt.bundle.signing import generate_keypair, public_key_bytes

    priv, pub = generate_keypair(args.output, overwrite=args.force)
    print(f"wrote private key {priv} (keep it secret) and public key {pub} "
          f"(ed25519 {public_key_bytes(pub).hex()})")  # fmt: skip
    return 0
