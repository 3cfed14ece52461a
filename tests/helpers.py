"""Shared helpers for the test-suite."""
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_DATA = osp.join(ROOT, 'demo', 'data')
PYTHON = sys.executable


def python_env(**extra):
    """Environment for subprocesses running the repository's tools."""
    env = dict(os.environ)
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    env.update({k: str(v) for k, v in extra.items()})
    return env


def free_port():
    """A TCP port that is free right now (for torchrun rendezvous)."""
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]
