import pytest

# Tests import rsvheat_mm first, as tools/train.py and custom_imports do.
import rsvheat_mm  # noqa: F401
from tests.helpers import DEMO_DATA, ROOT


@pytest.fixture(scope='session')
def repo_root():
    return ROOT


@pytest.fixture(scope='session')
def demo_data():
    return DEMO_DATA
