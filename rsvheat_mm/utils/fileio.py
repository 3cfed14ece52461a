"""Atomic local writes for everything mmengine saves.

mmengine's ``LocalBackend.put`` opens the target and writes into it, so a
job killed (pre-emption, OOM, Ctrl-C) while saving leaves a truncated
checkpoint or results file under the final name. This backend writes to a
temporary file in the same directory, fsyncs it and ``os.replace``s it onto
the target: readers see the old file or the complete new one, never half of
one. It replaces the ``local`` backend (prefixes '' and 'file'), which is
what ``CheckpointHook``, ``Runner.save_checkpoint``, ``mmengine.dump`` and
the toolboxes' result dumping use for plain paths.
"""
import os
import os.path as osp
import tempfile
from pathlib import Path
from typing import Union

import mmengine
from mmengine.fileio.backends import LocalBackend, register_backend


def atomic_write(data: Union[bytes, str], filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
    """Write ``data`` to ``filepath`` atomically (temp file + rename)."""
    filepath = os.fspath(filepath)
    directory = osp.dirname(osp.abspath(filepath))
    mmengine.mkdir_or_exist(directory)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(filepath)}.', suffix='.tmp',
                               dir=directory)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data.encode(encoding) if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
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


def install_atomic_local_backend() -> None:
    """Make mmengine's local file backend write atomically."""
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
