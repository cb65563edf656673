"""Signed bundles: an ed25519 signature over the exact bytes of ``manifest.json``.

The manifest holds the sha256 of every other file, so signing it signs the whole bundle. The
signature is the bundle member ``manifest.sig`` (never listed in the manifest's ``files``), a
small JSON object::

    {"format": "huma-rt-signature", "version": 1, "algorithm": "ed25519",
     "public_key": "<64 hex digits: the signer's raw 32-byte public key>",
     "signature": "<128 hex digits: ed25519 over the bytes of manifest.json>"}

Keys: a private key file is PEM (PKCS#8, unencrypted; what ``huma-rt keygen`` and
``openssl genpkey -algorithm ed25519`` write) or the raw 32-byte seed; a public key is PEM
(SubjectPublicKeyInfo; ``KEY.pub`` from keygen, ``openssl pkey -in KEY -pubout``), the raw 32
bytes, or their 64 hex digits. Verification needs the optional extra ``sign`` (cryptography).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from huma_rt.errors import FormatError, InputError, MissingDependencyError

log = logging.getLogger(__name__)

SIG_FORMAT = "huma-rt-signature"
MAX_SIG_BYTES = 4096
_MAX_KEY_FILE_BYTES = 64 * 1024

KeySource = str | os.PathLike | bytes
"""A key given as a file path (str or Path) or as the key's bytes (PEM, raw 32 bytes or hex)."""


class SignatureError(FormatError):
    """A bundle's signature is missing, malformed, wrong, or made by a key that is not trusted."""


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:
        raise MissingDependencyError(
            "signed bundles need the 'cryptography' package: pip install 'huma-rt[sign]'"
        ) from exc
    return ed25519, serialization


def has_crypto() -> bool:
    """Whether signatures can be made and checked here (the 'sign' extra is installed)."""
    try:
        _crypto()
    except MissingDependencyError:
        return False
    return True


def _key_bytes(source: KeySource, kind: str) -> tuple[bytes, str]:
    if isinstance(source, bytes):
        return source, f"{kind} given as bytes"
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"{kind} must be a file path or bytes; got {type(source).__name__}")
    path = Path(source)
    if not path.is_file():
        raise InputError(f"{kind} file {path} does not exist")
    if path.stat().st_size > _MAX_KEY_FILE_BYTES:
        raise InputError(f"{kind} file {path} is {path.stat().st_size} bytes; a key file is a few hundred")
    return path.read_bytes(), f"{kind} file {path}"


def load_private_key(source: KeySource):
    """An Ed25519PrivateKey from a PEM (PKCS#8) file/bytes or a raw 32-byte seed (or the key itself)."""
    ed25519, serialization = _crypto()
    if isinstance(source, ed25519.Ed25519PrivateKey):
        return source
    data, where = _key_bytes(source, "private key")
    try:
        if len(data) == 32:
            return ed25519.Ed25519PrivateKey.from_private_bytes(data)
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{where} is not an unencrypted PEM or raw 32-byte ed25519 private key: {exc}") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise InputError(f"{where} holds a {type(key).__name__}; bundles are signed with ed25519 keys")
    return key


def public_key_bytes(source: KeySource) -> bytes:
    """The raw 32-byte ed25519 public key from PEM, raw bytes or 64 hex digits (file or bytes)."""
    ed25519, serialization = _crypto()
    data, where = _key_bytes(source, "public key")
    stripped = data.strip()
    if len(data) == 32 and not stripped.startswith(b"-----"):
        return data
    if len(stripped) == 64:
        try:
            return bytes.fromhex(stripped.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{where} is not a PEM, raw 32-byte or hex ed25519 public key: {exc}") from exc
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise InputError(f"{where} holds a {type(key).__name__}; bundles are signed with ed25519 keys")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def generate_keypair(out: str | Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write a new ed25519 key pair: ``out`` (private, PEM PKCS#8, mode 0600) and ``out.pub`` (PEM)."""
    ed25519, serialization = _crypto()
    priv_path = Path(out)
    pub_path = priv_path.with_name(priv_path.name + ".pub")
    for p in (priv_path, pub_path):
        if p.exists() and not overwrite:
            raise InputError(f"key file {p} already exists (pass --force to replace it)")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    priv_path.parent.mkdir(parents=True, exist_ok=True)
    if priv_path.exists():
        priv_path.unlink()
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub_path.write_bytes(pub)
    return priv_path, pub_path


def sign_manifest(manifest: bytes, key: KeySource) -> bytes:
    """The ``manifest.sig`` bytes for ``manifest`` (the exact bytes of manifest.json)."""
    _, serialization = _crypto()
    priv = load_private_key(key)
    pub = priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    doc = {"format": SIG_FORMAT, "version": 1, "algorithm": "ed25519", "public_key": pub.hex(),
           "signature": priv.sign(manifest).hex()}  # fmt: skip
    return (json.dumps(doc, indent=1) + "\n").encode()


def _parse_sig(sig: bytes, where: str) -> tuple[bytes, bytes]:
    from huma_rt.bundle.schema import parse_json

    doc: Any = parse_json(sig, f"{where}: manifest.sig")
    want = {"format": SIG_FORMAT, "version": 1, "algorithm": "ed25519"}
    if not isinstance(doc, dict) or any(doc.get(k) != v for k, v in want.items()):
        raise SignatureError(f"{where}: manifest.sig must be a JSON object with {want}; it is not")
    try:
        pub, signature = bytes.fromhex(doc["public_key"]), bytes.fromhex(doc["signature"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SignatureError(f"{where}: manifest.sig needs hex 'public_key' (32 bytes) and 'signature' (64 bytes)") from exc
    if len(pub) != 32 or len(signature) != 64:
        raise SignatureError(f"{where}: manifest.sig public_key must be 32 bytes and signature 64; "
                             f"got {len(pub)} and {len(signature)}")  # fmt: skip
    return pub, signature


def verify_manifest(manifest: bytes, sig: bytes | None, trusted_keys: Sequence[KeySource] | None, where: str) -> str | None:
    """Check ``manifest.sig`` against ``manifest``; the signer's public key (hex) or None (unsigned).

    With ``trusted_keys`` (a non-empty list), the bundle must be signed by one of them:
    unsigned, wrongly signed and untrusted-signer bundles raise SignatureError. Without, a
    present signature is still checked when cryptography is installed (skipped with a log
    line when it is not), and an unsigned bundle passes.
    """
    trusted = None
    if trusted_keys is not None:
        if isinstance(trusted_keys, (str, bytes, os.PathLike)) or not isinstance(trusted_keys, Iterable):
            raise InputError("trusted_keys must be a list of key files or key bytes")
        trusted = {public_key_bytes(k) for k in trusted_keys}
        if not trusted:
            raise InputError("trusted_keys is empty; pass None to accept unsigned bundles")
    if sig is None:
        if trusted is not None:
            raise SignatureError(f"{where} is not signed (no manifest.sig), but trusted_keys were given")
        return None
    pub, signature = _parse_sig(sig, where)
    if trusted is None and not has_crypto():
        log.warning("%s is signed, but cryptography is not installed: signature not checked "
                    "(pip install 'huma-rt[sign]')", where)  # fmt: skip
        return None
    ed25519, _ = _crypto()
    if trusted is not None and pub not in trusted:
        raise SignatureError(f"{where} is signed by key {pub.hex()[:16]}…, which is not among the trusted_keys")
    from cryptography.exceptions import InvalidSignature

    try:
        ed25519.Ed25519PublicKey.from_public_bytes(pub).verify(signature, manifest)
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError(f"{where}: manifest.sig does not match manifest.json (bad signature for key "
                             f"{pub.hex()[:16]}…); the manifest was changed after signing") from exc  # fmt: skip
    return pub.hex()
