"""Registry location: imports every component of rsvheat_mm.

Listed as ``locations`` of the ``rsvheat_mm`` child registries, so that
``type='rsvheat_mm.X'`` works without ``custom_imports``.
"""
import rsvheat_mm.datasets  # noqa: F401
import rsvheat_mm.engine  # noqa: F401
import rsvheat_mm.evaluation  # noqa: F401
import rsvheat_mm.models  # noqa: F401
from rsvheat_mm.utils.plugins import import_all_plugins

import_all_plugins()
