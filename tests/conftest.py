import pytest

# Tests import rsvheat_mm first, as tools/train.py and custom_imports do.
import rsvheat_mm  # noqa: F401
from tests.helpers import DEMO_DATA, MMROTATE_SKIP_REASON, ROOT, toolbox_installed

HAS_MMROTATE = toolbox_installed('mmrotate')


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'needs_mmrotate: rotated detection; skipped (with the reason) when '
        'mmrotate is not installed')


def pytest_collection_modifyitems(config, items):
    """The one place where tests that need mmrotate are skipped without it."""
    if HAS_MMROTATE:
        return
    skip = pytest.mark.skip(reason=MMROTATE_SKIP_REASON)
    for item in items:
        if item.get_closest_marker('needs_mmrotate') is not None:
            item.add_marker(skip)


@pytest.fixture(scope='session')
def repo_root():
    return ROOT


@pytest.fixture(scope='session')
def demo_data():
    return DEMO_DATA
