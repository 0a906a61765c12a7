"""Sealed files: written atomically, with a versioned text header that fixes the payload's length and SHA-256.

A sealed file is one header line, ``arjax-<kind> v<version> <payload bytes> <payload SHA-256>``,
then the payload. ``write_sealed`` writes a temporary file in the same directory, syncs it and
renames it into place (``os.replace``), so a reader sees the old file or the new one, never half
of one. ``read_sealed`` checks the kind, the version, the length and the hash before it returns
a byte of the payload: a truncated, altered or foreign file raises instead of being parsed.
Model files (``arjax.save``) and training checkpoints (``arjax.train``) are sealed files.
"""

import hashlib
import os
import re
import tempfile
from pathlib import Path

__all__ = ["write_sealed", "read_sealed"]

_HEADER = re.compile(rb"arjax-(?P<kind>[a-z]+) v(?P<version>\d+) (?P<length>\d+) (?P<digest>[0-9a-f]{64})\n")
_MAX_HEADER = 128


def write_sealed(path: str | os.PathLike, kind: str, version: int, payload: bytes) -> None:
    """Write ``payload`` under a header naming ``kind`` and ``version``, atomically (temp file + rename).

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "notes.bin")
        >>> write_sealed(path, "notes", 1, b"hello")
        >>> open(path, "rb").read().split(b" ")[:3]
        [b'arjax-notes', b'v1', b'5']
        >>> read_sealed(path, "notes", (1,), ValueError)
        (1, b'hello')
    """
    header = f"arjax-{kind} v{version} {len(payload)} {hashlib.sha256(payload).hexdigest()}\n".encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temp, 0o666 & ~_umask())  # what open() would have given, not mkstemp's private 0o600
        with os.fdopen(handle, "wb") as f:
            f.write(header + payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_sealed(
    path: str | os.PathLike, kind: str, versions: tuple[int, ...], error: type[Exception]
) -> tuple[int, bytes]:
    """``(version, payload)`` of a file written by ``write_sealed``, after checking it whole.

    Raises:
        error: (with ``path`` in the message) the file is not a sealed ``kind`` file, was written
            in a format version not in ``versions``, or is truncated or corrupted.
    """
    data = Path(path).read_bytes()
    end = data.find(b"\n", 0, _MAX_HEADER)
    header = _HEADER.fullmatch(data[: end + 1]) if end >= 0 else None
    if not data.startswith(f"arjax-{kind} ".encode()):
        raise error(f"{path} is not an arjax {kind} file (it does not start with 'arjax-{kind} v…')")
    if header is None:
        raise error(f"{path} is corrupted: its header line is not 'arjax-{kind} v<version> <bytes> <sha256>'")
    version = int(header["version"])
    if version not in versions:
        readable = ", ".join(f"v{v}" for v in versions)
        newer = " (a newer arjax wrote it; upgrade arjax to read it)" if version > max(versions) else ""
        raise error(f"{path} is an arjax {kind} file in format v{version}, but this arjax reads {readable}{newer}")
    payload, length = data[end + 1 :], int(header["length"])
    if len(payload) < length:
        raise error(f"{path} is truncated: its payload has {len(payload)} of {length} bytes")
    if len(payload) > length:
        raise error(f"{path} is corrupted: its payload has {len(payload)} bytes, its header says {length}")
    if hashlib.sha256(payload).hexdigest() != header["digest"].decode():
        raise error(f"{path} is corrupted: the SHA-256 of its payload does not match its header")
    return version, payload
