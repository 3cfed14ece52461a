"""Weights-only checkpoint loading with mmengine's allow-list; atomic writes."""
import argparse
import os

import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

from rsvheat_mm.utils import UnsafeCheckpointError, atomic_write, load_checkpoint_safely


class _Evil:
    """Runs a shell command when unpickled (what an attacker would ship)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_malicious_checkpoint_refused_and_not_executed(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': _Evil(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match=r'evil\.pth.*(system|posix)'):
        load_checkpoint_safely(str(path))
    # mmengine's own entry points (load_from, resume, Pretrained) use it too
    with pytest.raises(UnsafeCheckpointError):
        CheckpointLoader.load_checkpoint(str(path))
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(torch.nn.Linear(2, 2), str(path))
    assert not marker.exists(), 'the pickled payload was executed'


def test_getattr_cannot_walk_to_arbitrary_attributes(tmp_path):
    # getattr(HistoryBuffer, '__init__') is how an attacker would start a walk
    # to __globals__/__builtins__; only the statistics methods are allowed.
    class Walk:
        def __reduce__(self):
            return (getattr, (HistoryBuffer, '__init__'))

    path = tmp_path / 'walk.pth'
    torch.save({'x': Walk()}, path)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint_safely(str(path))


def test_mmengine_objects_are_allowed(tmp_path):
    import numpy as np
    buf = HistoryBuffer()
    buf.update(1.5)
    buf.update(np.float64(2.0))
    ckpt = {'message_hub': {'log_scalars': {'loss': buf}},
            'meta': {'seed': np.int64(3), 'arr': np.arange(3)},
            'state_dict': {'w': torch.ones(2)}}
    path = tmp_path / 'ok.pth'
    torch.save(ckpt, path)
    out = load_checkpoint_safely(str(path))
    assert out['message_hub']['log_scalars']['loss'].mean() == pytest.approx(1.75)
    assert int(out['meta']['seed']) == 3


def test_foreign_metadata_only_when_asked(tmp_path):
    path = tmp_path / 'official.pth'
    torch.save({'model': {'w': torch.ones(2)}, 'args': argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint_safely(str(path))
    out = load_checkpoint_safely(str(path), allow_metadata=True)
    assert torch.equal(out['model']['w'], torch.ones(2))
    assert dict(out['args']) == {'lr': 0.1}


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_checkpoint_safely(str(tmp_path / 'nope.pth'))


def test_atomic_write_never_leaves_half_a_file(tmp_path):
    target = tmp_path / 'out.bin'
    atomic_write(b'old', target)

    # a failure while writing keeps the old content and leaves no temp file
    import rsvheat_mm.utils.fileio as fio
    real_fdopen = os.fdopen

    def failing_fdopen(fd, mode):
        f = real_fdopen(fd, mode)

        class W:
            def __enter__(self_):
                return self_

            def __exit__(self_, *a):
                f.close()

            def write(self_, data):
                f.write(data[:1])
                raise OSError('disk full')

            def flush(self_):
                pass

            def fileno(self_):
                return f.fileno()

        return W()

    fio.os.fdopen = failing_fdopen
    try:
        with pytest.raises(OSError, match='disk full'):
            atomic_write(b'new content', target)
    finally:
        fio.os.fdopen = real_fdopen
    assert target.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['out.bin']


def test_mmengine_local_backend_is_atomic(tmp_path):
    from mmengine.fileio import get_file_backend
    backend = get_file_backend(str(tmp_path / 'x.txt'))
    assert type(backend).__name__ == 'AtomicLocalBackend'
    backend.put_text('hello', str(tmp_path / 'sub' / 'x.txt'))
    assert (tmp_path / 'sub' / 'x.txt').read_text() == 'hello'
