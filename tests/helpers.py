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


def run_tool(cmd, timeout=600, **env):
    """Run a repository tool or script from the repository root (PYTHONPATH
    set, ``env`` added to the environment) and return its stdout + stderr.

    A non-zero exit fails the test with the command and the output's tail; a
    run past ``timeout`` seconds is killed with its whole process group
    (torchrun's workers included) and fails the test.
    """
    import signal
    import subprocess
    proc = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, env=python_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f'{" ".join(map(str, cmd))}: no exit within {timeout} s\n'
                             f'{out[-3000:]}\n{err[-3000:]}') from None
    assert proc.returncode == 0, (f'{" ".join(map(str, cmd))}: exit status {proc.returncode}\n'
                                  f'{out[-3000:]}\n{err[-3000:]}')
    return out + err


def evaluate(evaluator, data_samples):
    """Scores of ``data_samples`` (ground truth + prediction, as a model's
    ``test_step`` returns them) by an mmengine ``Evaluator``, e.g. a runner's
    ``val_evaluator`` built from the config under test."""
    evaluator.process(data_samples=list(data_samples))
    return evaluator.evaluate(len(data_samples))


def segmentation_scores(pred, gt, num_classes, ignore_index=255, exclude=()):
    """Oracle of mmseg's IoU metric, from one confusion matrix (NumPy).

    ``pred``/``gt``: label maps (any shape, or lists of them). Follows
    mmseg's conventions: a class's IoU/F1 is NaN (left out of the means)
    where its denominator is empty, so classes absent from both maps do not
    count. Returns percentages ``mIoU``, ``mF1``, ``OA`` and per-class
    ``IoU``/``F1`` arrays; ``exclude`` lists class indices left out of the
    means.
    """
    import numpy as np
    if isinstance(pred, (list, tuple)):
        pred = np.concatenate([np.asarray(p).ravel() for p in pred])
        gt = np.concatenate([np.asarray(g).ravel() for g in gt])
    pred, gt = np.asarray(pred).ravel().astype(np.int64), np.asarray(gt).ravel().astype(np.int64)
    valid = gt != ignore_index
    cm = np.bincount(num_classes * gt[valid] + pred[valid],
                     minlength=num_classes**2).reshape(num_classes, num_classes)
    tp = np.diag(cm).astype(np.float64)
    pred_area, label_area = cm.sum(0), cm.sum(1)
    with np.errstate(divide='ignore', invalid='ignore'):
        iou = tp / (pred_area + label_area - tp)
        precision, recall = tp / pred_area, tp / label_area
        f1 = 2 * precision * recall / (precision + recall)
    keep = [c for c in range(num_classes) if c not in exclude]
    return dict(mIoU=100 * np.nanmean(iou[keep]), mF1=100 * np.nanmean(f1[keep]),
                OA=100 * tp.sum() / valid.sum(), IoU=100 * iou, F1=100 * f1)


def toolbox_installed(name):
    """Whether a toolbox is installed (found without importing it)."""
    import importlib.util
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# Rotated detection needs mmrotate; mmdet 3.3 users often have none. Tests
# marked `needs_mmrotate` are skipped with this reason by tests/conftest.py.
MMROTATE_SKIP_REASON = ('mmrotate is not installed: rotated detection is not tested '
                        '(install the official set or the OneDL set, both include mmrotate)')


def blocked_env(*modules, **extra):
    """:func:`python_env` in which ``import <module>`` fails as if not installed.

    A ``sitecustomize`` (tests/blockers/) blocks the listed top-level modules
    (``sys.modules[name] = None``) in every Python process started with this
    environment.
    """
    env = python_env(**extra)
    env['PYTHONPATH'] = osp.join(ROOT, 'tests', 'blockers') + os.pathsep + env['PYTHONPATH']
    env['RSVHEAT_TEST_BLOCK_MODULES'] = ','.join(modules)
    return env


#: The tiny RS-vHeat of the CPU tests (one block per stage, C = 16) and its
#: stage widths (strides 4/8/16/32).
TINY_ARCH = dict(depths=[1, 1, 1, 1], embed_dims=16)
TINY_DIMS = [16, 32, 64, 128]


def val_metrics(runner):
    """The last validation scores a runner logged, without the ``val/`` prefix."""
    return {k[len('val/'):]: v.current() for k, v in runner.message_hub.log_scalars.items()
            if k.startswith('val/')}


def load_tool(relpath):
    """Import a script under ``tools/`` (e.g. ``'dataset_converters/dior.py'``)
    as a module."""
    import importlib.util
    path = osp.join(ROOT, 'tools', relpath)
    name = 'tool_' + relpath.replace('/', '_').replace('.py', '')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def import_benchmarking(submodule=None):
    """The benchmark's measuring package ``tools/analysis/benchmarking`` (or
    one of its modules, e.g. ``'memory'``), imported as ``benchmarking`` --
    the name ``tools/analysis/benchmark.py`` imports it by -- without
    putting ``tools/analysis`` on ``sys.path``."""
    import importlib
    import importlib.util
    import sys
    if 'benchmarking' not in sys.modules:
        path = osp.join(ROOT, 'tools', 'analysis', 'benchmarking')
        spec = importlib.util.spec_from_file_location(
            'benchmarking', osp.join(path, '__init__.py'), submodule_search_locations=[path])
        module = importlib.util.module_from_spec(spec)
        sys.modules['benchmarking'] = module
        spec.loader.exec_module(module)
    return importlib.import_module('benchmarking' + (f'.{submodule}' if submodule else ''))
