"""Shared fixtures of the pretraining tests."""
import pytest
import torch

from tests.test_pretrain.utils import make_samples


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run the tiny models on one thread: on the shared 2-core test machine,
    OpenMP workers spin-waiting for a busy core cost ~10x the compute."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def samples():
    """Packed 48 px crops of real scenes: optical+SAR pairs, an unpaired
    optical image and an unpaired SAR (stand-in) image. Fresh per test: the
    data preprocessor normalises ``partner_inputs`` in place."""
    return make_samples()
