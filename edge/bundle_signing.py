"""Signed bundles: who made a bundle, checked before anything in it runs.

The trust chain. The operator makes a key pair once (`edge bundle keygen`), keeps the
private key on the build machine, and installs the public key on each target out of
band (with the OS image, by configuration management, on a USB stick of its own).
`edge bundle create --sign-key` writes `SHA256SUMS` (every file of the bundle, bundle.json
and install.sh included) and `SHA256SUMS.sig`, an Ed25519 signature over it. On the
target, with nothing from the bundle run yet, two system tools check the lot:

    openssl pkeyutl -verify -pubin -inkey /etc/edge/bundle.pub -rawin \
        -in SHA256SUMS -sigfile SHA256SUMS.sig && sha256sum -c --strict SHA256SUMS

and only then `./install.sh` (or `edge bundle install --public-key`, which checks the
same). A bundle whose wheel was replaced and whose bundle.json was regenerated fails the
signature; a replaced install.sh fails its line in SHA256SUMS.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from edge.errors import EdgeError

__all__ = ["SUMS", "SIGNATURE", "BundleSignatureError", "keygen", "write_sums", "sign", "verify_signature"]

SUMS = "SHA256SUMS"
SIGNATURE = "SHA256SUMS.sig"


class BundleSignatureError(EdgeError):
    """The bundle is unsigned, signed by another key, or its files do not match what was signed."""


def keygen(directory: Path) -> tuple[Path, Path]:
    """A new Ed25519 key pair in `directory`: edge-bundle.key (0600) and edge-bundle.pub."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    directory.mkdir(parents=True, exist_ok=True)
    key_path, pub_path = directory / "edge-bundle.key", directory / "edge-bundle.pub"
    if key_path.exists() or pub_path.exists():
        raise BundleSignatureError(f"{key_path} or {pub_path} exists; keys are never overwritten")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_path, pub_path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _bundle_files(root: Path) -> list[Path]:
    """Every file of the bundle but the two that sign it."""
    signing = {root / SUMS, root / SIGNATURE}
    return sorted(p for p in root.rglob("*") if p.is_file() and p not in signing)


def write_sums(root: Path) -> Path:
    """SHA256SUMS for every file under `root` (sha256sum's format, paths relative)."""
    lines = [f"{_sha256(p)}  {p.relative_to(root).as_posix()}\n" for p in _bundle_files(root)]
    sums = root / SUMS
    sums.write_text("".join(lines), encoding="utf-8")
    return sums


def sign(root: Path, key_path: Path) -> Path:
    """Write SHA256SUMS and its Ed25519 signature with the private key at `key_path`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleSignatureError(f"{key_path} is not an Ed25519 private key (make one with edge bundle keygen)")
    sums = write_sums(root)
    (root / SIGNATURE).write_bytes(key.sign(sums.read_bytes()))
    return root / SIGNATURE


def verify_signature(root: Path, public_key_path: Path) -> None:
    """Check SHA256SUMS.sig against the public key, then every file against SHA256SUMS, and
    that no file is unlisted. Raises BundleSignatureError naming what failed."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        public = serialization.load_pem_public_key(public_key_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise BundleSignatureError(f"--public-key {public_key_path}: not a readable PEM public key: {exc}") from None
    if not isinstance(public, Ed25519PublicKey):
        raise BundleSignatureError(f"--public-key {public_key_path}: not an Ed25519 public key")
    sums, signature = root / SUMS, root / SIGNATURE
    if not sums.is_file() or not signature.is_file():
        raise BundleSignatureError(f"bundle {root} is not signed ({SUMS} and {SIGNATURE} missing); nothing installed")
    try:
        public.verify(signature.read_bytes(), sums.read_bytes())
    except InvalidSignature:
        raise BundleSignatureError(f"bundle {root}: {SIGNATURE} does not verify with {public_key_path}: "
                                   "the bundle was changed, or signed by another key; nothing installed") from None
    listed: dict[str, str] = {}
    for line in sums.read_text(encoding="utf-8").splitlines():
        digest, _, rel = line.partition("  ")
        listed[rel] = digest
    problems = [f"{rel}: missing" for rel in sorted(listed) if not (root / rel).is_file()]
    problems += [f"{rel}: sha256 differs from {SUMS}" for rel in sorted(listed)
                 if (root / rel).is_file() and _sha256(root / rel) != listed[rel]]
    problems += [f"{p.relative_to(root).as_posix()}: not listed in {SUMS}" for p in _bundle_files(root)
                 if p.relative_to(root).as_posix() not in listed]
    if problems:
        raise BundleSignatureError(f"bundle {root} does not match its signed {SUMS}; nothing installed:\n  "
                                   + "\n  ".join(problems))
