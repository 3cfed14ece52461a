"""A stack without mmrotate (e.g. mmdet 3.3 users): rsvheat_mm works, rotated tests skip.

mmrotate is hidden from fresh interpreters (tests/blockers/sitecustomize.py),
so the skip path of tests/conftest.py runs in the default suite on any stack.
"""
import subprocess

from tests.helpers import MMROTATE_SKIP_REASON, PYTHON, ROOT, blocked_env


def _run(args):
    proc = subprocess.run([PYTHON, *args], cwd=ROOT, env=blocked_env('mmrotate'),
                          capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def test_rsvheat_mm_works_without_mmrotate():
    rc, out = _run(['-c', """
import importlib.util, sys
import rsvheat_mm
assert importlib.util.find_spec('mmrotate') is None
import mmdet.models, mmseg.models  # registers rsvheat_mm's mmdet/mmseg parts
from rsvheat_mm.utils.plugins import registered_toolboxes
from mmdet.registry import MODELS
from mmengine.registry import init_default_scope
init_default_scope('mmdet')
m = MODELS.build(dict(type='RSVHeat', arch=dict(depths=[1, 1, 1, 1], embed_dims=16),
                      pretrain_img_size=64))
print(sorted(registered_toolboxes()), type(m).__name__,
      rsvheat_mm.runtime_compat.status()['collections_alias'])
"""])
    assert rc == 0, out
    last = out.strip().splitlines()[-1]
    assert "'mmdet'" in last and "'mmrotate'" not in last and 'RSVHeat' in last
    assert 'not needed: mmrotate is not installed' in last


def test_rotated_tests_skip_with_the_reason_and_the_rest_pass():
    rc, out = _run(['-m', 'pytest', 'tests/test_foundation/test_registry.py', '-q', '-rs',
                    '-k', 'under_each_default_scope or mmrotate_imports', '-p', 'no:cacheprovider'])
    assert rc == 0, out
    # mmpretrain, mmseg, mmdet pass; the mmrotate scope and mmrotate import skip
    assert '3 passed, 2 skipped' in out, out
    assert out.count(MMROTATE_SKIP_REASON[:60]) == 2, out


def test_demo_skips_the_rotated_stage(tmp_path):
    """make demo on a stack without mmrotate: the rotated stage is reported as
    skipped (in the summary too) instead of failing the whole job."""
    rc, out = _run(['tools/demo.py', '--stages', 'rotated', '--work-dir', str(tmp_path)])
    assert rc == 0, out
    assert 'skipped: mmrotate is not installed' in out, out
    assert '| rotated |' in (tmp_path / 'summary.md').read_text()
    assert 'skipped no mmrotate' in (tmp_path / 'summary.md').read_text()
