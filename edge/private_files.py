"""State and secret files that other users on the box may not read or change.

The ledger and the answer cache hold what every tenant asked and spent; the tokens file
and TLS key hold credentials. State files are created 0600 in a 0700 directory whatever
the umask (SQLite gives their -wal and -shm files the same mode); a secret file is
refused when other users could read it, or write it, or when someone else owns it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from edge.errors import ConfigError

__all__ = ["private_state_file", "check_secret_file"]


def private_state_file(path: Path, *, own_dir: bool) -> None:
    """Create `path` (and, with `own_dir`, its directory) for this user only, and tighten
    an existing file of ours made by an older version. `own_dir`: the directory is edge's
    own (its default state directory, or one it creates now): make it 0700 too. A
    directory the operator chose and shares (say /srv) is left as it is."""
    parent = path.parent
    created = not parent.exists()
    parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if (own_dir or created) and _ours(parent) and stat.S_IMODE(parent.stat().st_mode) & 0o077:
        parent.chmod(0o700)
    # O_NOFOLLOW: a link planted where the file will be must not send our writes elsewhere.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        if os.fstat(fd).st_uid == os.geteuid():
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):  # left by an older version with wider modes
        side = path.with_name(path.name + suffix)
        if side.exists() and not side.is_symlink() and _ours(side):
            side.chmod(0o600)


def _ours(path: Path) -> bool:
    return path.stat().st_uid == os.geteuid()


def check_secret_file(path: str, field: str) -> Path:
    """Refuse a secret file that is missing, not a regular file, readable or writable by
    other users, or owned by someone other than this user or root; the message names
    the file and the fix."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError as exc:
        raise ConfigError(f"{field}: cannot read {p}: {exc.strerror}") from None
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{field}: {p} is not a regular file")
    if mode & stat.S_IROTH:
        raise ConfigError(f"{field}: {p} is readable by every user (mode {mode:04o}); run: chmod 600 {p}")
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "every user" if mode & stat.S_IWOTH else "its group"
        raise ConfigError(f"{field}: {p} is writable by {who} (mode {mode:04o}), who could add a token or "
                          f"swap the key; run: chmod 600 {p}")
    if st.st_uid not in (os.geteuid(), 0):
        raise ConfigError(f"{field}: {p} is owned by uid {st.st_uid}, not by this user ({os.geteuid()}) or "
                          f"root; run: chown {os.geteuid()} {p}")
    return p
