"""Reading a report for the UI's report route: through the store (any backend), with no symbolic link
followed on a file:// store (``lstat`` on every path component, then ``O_NOFOLLOW``)."""

from __future__ import annotations

import errno
import logging
import os
import stat

from airflow_mlops.store.artifacts import ArtifactNotFoundError, ArtifactStore, StorageError

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------
# reading reports from the store without following symlinks
# ------------------------------------------------------------------------------------------
class SymlinkRefused(StorageError):
    """A component of a report's path in a file:// store is a symbolic link."""


def _no_symlinks(store: ArtifactStore, key: str) -> None:
    """Refuse ``key`` if any path component below the store root is a symlink (``lstat``, not ``realpath``)."""
    path = store.local_path("")
    for part in key.split("/"):
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"{key} does not exist in the artifact store") from None
        if stat.S_ISLNK(st.st_mode):
            rel = os.path.relpath(path, store.local_path(""))
            raise SymlinkRefused(f"refusing to serve {key}: {rel} is a symbolic link in the artifact store "
                                 "(the report server never follows links)")


def read_report(store: ArtifactStore, key: str) -> bytes:
    """Bytes of a report key. On file:// stores: no path component may be a symlink, and the file is opened
    component by component with ``O_NOFOLLOW`` (a link swapped in after the check is refused too)."""
    if not store.is_local:
        return store.read_bytes(key)
    _no_symlinks(store, key)
    parts = key.split("/")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fds: list[int] = []
    try:
        fds.append(os.open(store.local_path(""), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)))
        for part in parts[:-1]:
            fds.append(os.open(part, flags | getattr(os, "O_DIRECTORY", 0), dir_fd=fds[-1]))
        fd = os.open(parts[-1], flags, dir_fd=fds[-1])
        fds.append(fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ArtifactNotFoundError(f"{key} is not a regular file")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    except FileNotFoundError:
        raise ArtifactNotFoundError(f"{key} does not exist in the artifact store") from None
    except (NotADirectoryError, IsADirectoryError):
        raise ArtifactNotFoundError(f"{key} is not a file in the artifact store") from None
    except OSError as e:  # ELOOP: a component became a symlink after the check
        if e.errno in (errno.ELOOP, errno.EMLINK):
            raise SymlinkRefused(f"refusing to serve {key}: a path component is a symbolic link") from None
        raise StorageError(f"cannot read {key}: {e}") from None
    finally:
        for fd in reversed(fds):
            os.close(fd)


__all__ = ["SymlinkRefused", "read_report"]
