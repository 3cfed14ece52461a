import pytest
import torch
from mmengine.registry import DefaultScope


@pytest.fixture(scope='package', autouse=True)
def single_intra_op_thread():
    """One torch thread for these tests: on the shared 2-core machine, OpenMP
    with 2 threads per process under a load of a few processes is up to 10x
    slower than 1 thread (spin-waiting on a busy core); alone it is ~1.5x faster."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def mmseg_scope():
    """These tests build mmseg components by bare name: the mmseg default
    scope for each test, restored afterwards (not set at import time, where
    it would leak into every module collected after these)."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield
