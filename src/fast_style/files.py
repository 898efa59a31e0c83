"""Files: atomic writes (temp file next to the target, then rename) and content hashes."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write, durable: bool = False, temp_suffix: str | None = None) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a half-written file.

    The temporary file sits next to ``path`` (same file system, so the rename is atomic) and is
    removed if ``write`` raises. ``durable=True`` also fsyncs the file before the rename and the
    folder after it, so the new file survives a power cut (checkpoints).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=temp_suffix or path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        if durable:
            _fsync(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _fsync(path: str | Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. folders on Windows cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
