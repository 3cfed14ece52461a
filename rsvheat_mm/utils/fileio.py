"""Atomic file writes (temporary file + rename).

A job killed (pre-emption, OOM, Ctrl-C) while writing must never leave a
truncated checkpoint or result under the final name. :func:`atomic_write`
writes a temporary file in the target's directory, fsyncs it and
``os.replace``s it onto the target: readers see the old file or the complete
new one. :class:`AtomicLocalBackend` is mmengine's ``LocalBackend`` with
atomic ``put``/``put_text``; the ``atomic_writes`` patch of
:mod:`rsvheat_mm.runtime_compat` makes it mmengine's ``local`` backend (what
``CheckpointHook``, ``Runner.save_checkpoint`` and ``mmengine.dump`` use for
plain paths).
"""
import os
import os.path as osp
import secrets
import stat
from pathlib import Path
from typing import Union

from mmengine.fileio.backends import LocalBackend


def _create_temp(directory: str, basename: str):
    """A new file next to the target; the kernel applies umask/default ACLs."""
    while True:
        tmp = osp.join(directory, f'.{basename}.{secrets.token_hex(4)}.tmp')
        try:
            # 0o666 like open(): the process umask decides, as for any new file.
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_BINARY', 0),
                           0o666), tmp
        except FileExistsError:
            continue


def atomic_write(data: Union[bytes, str], filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
    """Write ``data`` to ``filepath`` atomically (temp file + fsync + rename).

    Permissions are those ``open(filepath, 'wb')`` would give: a new file gets
    ``0o666`` minus the umask; a replaced file keeps its mode.
    """
    filepath = os.fspath(filepath)
    directory = osp.dirname(osp.abspath(filepath))
    os.makedirs(directory, exist_ok=True)
    try:
        old_mode = stat.S_IMODE(os.stat(filepath).st_mode)
    except FileNotFoundError:
        old_mode = None
    fd, tmp = _create_temp(directory, osp.basename(filepath))
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data.encode(encoding) if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        if old_mode is not None:
            os.chmod(tmp, old_mode)
        os.replace(tmp, filepath)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


class AtomicLocalBackend(LocalBackend):
    """:class:`LocalBackend` whose ``put``/``put_text`` are atomic."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write(obj, filepath)

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        atomic_write(obj, filepath, encoding)
