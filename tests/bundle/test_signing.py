"""Signed bundles: keygen -> pack --sign -> open_bundle/Avatar.load(trusted_keys) round trips,
and every refusal (unsigned, tampered, untrusted, malformed, cryptography missing)."""

from __future__ import annotations

import json
import sys
import tarfile

import pytest
from _edit import rewrite_manifest, tar_dot
from _runtime_avatar import small_source

from huma_rt.bundle import SignatureError, generate_keypair, open_bundle, pack
from huma_rt.bundle.signing import public_key_bytes
from huma_rt.cli import main
from huma_rt.errors import FormatError, InputError, MissingDependencyError

pytest.importorskip("cryptography")


@pytest.fixture
def keys(tmp_path):
    priv, pub = generate_keypair(tmp_path / "keys" / "signer")
    return priv, pub


@pytest.fixture
def signed(export_dir, tmp_path, keys):
    return pack(small_source(export_dir), tmp_path / "signed", sign_key=keys[0])


def test_keygen_writes_a_private_and_a_public_key(keys):
    priv, pub = keys
    assert priv.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert priv.stat().st_mode & 0o777 == 0o600
    with pytest.raises(InputError, match="already exists"):
        generate_keypair(priv)


def test_round_trip_folder_and_tar(signed, keys, tmp_path, export_dir):
    pub_hex = public_key_bytes(keys[1]).hex()
    sig = json.loads((signed / "manifest.sig").read_text())
    assert sig["algorithm"] == "ed25519" and sig["public_key"] == pub_hex
    assert "manifest.sig" not in json.loads((signed / "manifest.json").read_text())["files"]
    for trusted in ([keys[1]], [str(keys[1])], [public_key_bytes(keys[1])], [pub_hex.encode()]):
        assert open_bundle(signed, trusted_keys=trusted).signer == pub_hex
    assert open_bundle(signed).signer == pub_hex  # verified without trusted_keys too
    packed_tar = pack(small_source(export_dir), tmp_path / "s.tar", archive=True, sign_key=keys[0])
    assert tarfile.open(packed_tar).getnames()[:2] == ["manifest.json", "manifest.sig"]
    assert open_bundle(packed_tar, trusted_keys=[keys[1]]).signer == pub_hex
    assert open_bundle(tar_dot(signed, tmp_path / "dot.tar"), trusted_keys=[keys[1]]).signer == pub_hex


def test_avatar_load_threads_trusted_keys(signed, keys, bundle_dir):
    from huma_rt.runtime import Avatar

    a = Avatar.load(signed, device="cpu", threads=1, trusted_keys=[keys[1]])
    assert a.bundle.signer == public_key_bytes(keys[1]).hex()
    with pytest.raises(SignatureError, match="not signed"):
        Avatar.load(bundle_dir, device="cpu", threads=1, trusted_keys=[keys[1]])


def test_unsigned_bundle_with_trusted_keys(bundle_dir, keys):
    assert open_bundle(bundle_dir).signer is None
    with pytest.raises(SignatureError, match=r"is not signed \(no manifest.sig\), but trusted_keys were given"):
        open_bundle(bundle_dir, trusted_keys=[keys[1]])


def test_tampered_manifest(signed, keys):
    rewrite_manifest(signed, lambda m: m.update(name="someone else"))
    for trusted in (None, [keys[1]]):  # a present signature is checked either way
        with pytest.raises(SignatureError, match="does not match manifest.json"):
            open_bundle(signed, trusted_keys=trusted)


def test_untrusted_signer(signed, tmp_path):
    _, other = generate_keypair(tmp_path / "other")
    assert open_bundle(signed).signer  # valid, just not by a trusted key
    with pytest.raises(SignatureError, match="not among the trusted_keys"):
        open_bundle(signed, trusted_keys=[other])


def test_resigned_by_an_attacker_is_untrusted(signed, keys, tmp_path):
    """Changing the manifest and re-signing with another key passes only an open_bundle without trusted_keys."""
    from huma_rt.bundle.signing import sign_manifest

    evil, _ = generate_keypair(tmp_path / "evil")
    rewrite_manifest(signed, lambda m: m.update(name="evil"))
    (signed / "manifest.sig").write_bytes(sign_manifest((signed / "manifest.json").read_bytes(), evil))
    assert open_bundle(signed).name == "evil"
    with pytest.raises(SignatureError, match="not among the trusted_keys"):
        open_bundle(signed, trusted_keys=[keys[1]])


@pytest.mark.parametrize(
    "sig",
    [b"", b"{}", b"not json", b'{"format": "huma-rt-signature", "version": 1, "algorithm": "ed25519"}',
     b'{"format": "huma-rt-signature", "version": 1, "algorithm": "ed25519", "public_key": "00", "signature": "zz"}',
     b"[" * 2000,
     ],  # fmt: skip
)
def test_malformed_signature_file(signed, sig):
    (signed / "manifest.sig").write_bytes(sig)
    with pytest.raises(FormatError):
        open_bundle(signed)


def test_oversized_signature_refused(signed):
    (signed / "manifest.sig").write_bytes(b" " * 5000)
    with pytest.raises(FormatError, match="at most 4096"):
        open_bundle(signed)


def test_bad_trusted_keys(signed, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        open_bundle(signed, trusted_keys=[tmp_path / "nope.pub"])
    with pytest.raises(InputError, match="not a PEM"):
        open_bundle(signed, trusted_keys=[b"short"])
    with pytest.raises(InputError, match="list of key files"):
        open_bundle(signed, trusted_keys=str(tmp_path / "x.pub"))
    with pytest.raises(InputError, match="empty"):
        open_bundle(signed, trusted_keys=[])


def test_raw_private_key_and_openssl_style_pem(export_dir, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    (tmp_path / "raw.key").write_bytes(raw)
    out = pack(small_source(export_dir), tmp_path / "b", sign_key=tmp_path / "raw.key")
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert open_bundle(out, trusted_keys=[pub]).signer == pub.hex()


def test_cli_keygen_and_pack_sign(bundle_dir, tmp_path, capsys):
    key = tmp_path / "k" / "bundle.key"
    assert main(["keygen", "-o", str(key)]) == 0
    assert "wrote private key" in capsys.readouterr().out
    assert main(["keygen", "-o", str(key)]) == 1 and "already exists" in capsys.readouterr().err
    out = tmp_path / "resigned.tar"
    assert main(["pack", "--from-bundle", str(bundle_dir), "-o", str(out), "--archive", "--sign", str(key)]) == 0
    assert "signed with" in capsys.readouterr().out
    assert open_bundle(out, trusted_keys=[key.with_name("bundle.key.pub")]).signer
    assert main(["pack", "--from-bundle", str(bundle_dir), "-o", str(tmp_path / "x"), "--sign", str(tmp_path / "no.key")]) == 1
    assert "private key file" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_missing_cryptography(signed, keys, monkeypatch, caplog):
    for name in [m for m in sys.modules if m == "cryptography" or m.startswith("cryptography.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "cryptography", None)  # import cryptography -> ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'huma-rt\[sign\]'"):
        open_bundle(signed, trusted_keys=[keys[1]])
    with pytest.raises(MissingDependencyError, match=r"huma-rt\[sign\]"):
        generate_keypair(keys[0].with_name("another"))
    with caplog.at_level("WARNING"):
        assert open_bundle(signed).signer is None  # loads; says the signature went unchecked
    assert "signature not checked" in caplog.text


def test_cli_render_with_trusted_key(bundle_dir, tmp_path, capsys):
    """The user's flow end to end: keygen, pack --sign, render --trusted-key; unsigned is refused."""
    import numpy as np

    from huma_rt.media import write_wav

    key = tmp_path / "k" / "bundle.key"
    assert main(["keygen", "-o", str(key)]) == 0
    signed = tmp_path / "signed.tar"
    assert main(["pack", "--from-bundle", str(bundle_dir), "-o", str(signed), "--archive", "--sign", str(key)]) == 0
    wav = write_wav(tmp_path / "in.wav", (0.1 * np.sin(np.arange(8000) / 5)).astype(np.float32), 16000)
    pub = str(key.with_name("bundle.key.pub"))
    args = ["render", "--audio", str(wav), "--device", "cpu", "--trusted-key", pub, "--png-dir"]
    assert main([*args[:1], "--bundle", str(signed), *args[1:], str(tmp_path / "png")]) == 0
    assert len(list((tmp_path / "png").glob("frame_*.png"))) == 13
    capsys.readouterr()
    assert main([*args[:1], "--bundle", str(bundle_dir), *args[1:], str(tmp_path / "png2")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "sign" in err and not (tmp_path / "png2").exists()
