"""Test-only: make the modules in $RSVHEAT_TEST_BLOCK_MODULES look uninstalled.

Put on PYTHONPATH by ``tests.helpers.blocked_env`` to emulate a stack
without, e.g., mmrotate, in this process and in every child process that
inherits the environment. A ``None`` entry in ``sys.modules`` is the import
system's own way to block a module: ``import mmrotate`` (and of any
submodule) raises ModuleNotFoundError and ``importlib.util.find_spec``
returns None.
"""
import os
import sys

for _name in os.environ.get('RSVHEAT_TEST_BLOCK_MODULES', '').split(','):
    if _name.strip():
        sys.modules[_name.strip()] = None
