"""The process-wide patches of rsvheat_mm.runtime_compat: listed, minimal, switchable.

What each patch changes is observed in fresh interpreters (the test session
has imported rsvheat_mm with every patch on), once with all patches on and
once with each switched off: only that patch's change may disappear.
"""
import json
import os
import re
import stat
import subprocess
import sys
import textwrap

import pytest

from rsvheat_mm import runtime_compat
from rsvheat_mm.utils import atomic_write
from tests.helpers import PYTHON, ROOT, blocked_env, python_env, toolbox_installed

PATCH_NAMES = ['root_registry', 'toolbox_import_hook', 'collections_alias', 'safe_checkpoint',
               'atomic_writes', 'config_package_names', 'pkg_resources_warning']

# Prints what the patches change, as JSON, after `import rsvheat_mm`.
FINGERPRINT = textwrap.dedent("""
    import collections, json, sys, warnings
    ALIASES = ('Sequence', 'Mapping', 'Iterable')
    before_aliases = sorted(n for n in ALIASES if hasattr(collections, n))
    import rsvheat_mm
    from rsvheat_mm import runtime_compat
    from mmengine.config.utils import MODULE2PACKAGE
    from mmengine.fileio.backends import backends
    from mmengine.registry import MODELS
    from mmengine.runner.checkpoint import CheckpointLoader
    print(json.dumps(dict(
        status=runtime_compat.status(),
        backend=backends['local'].__name__,
        loader=CheckpointLoader._schemes[''].__module__,
        hook=any(type(f).__name__ == '_ToolboxImportHook' for f in sys.meta_path),
        toolboxes=sorted(t for t in ('mmpretrain', 'mmseg', 'mmdet', 'mmrotate')
                         if sys.modules.get(t) is not None),
        aliases=sorted(n for n in ALIASES if hasattr(collections, n)),
        before_aliases=before_aliases,
        module2package=MODULE2PACKAGE,
        pkg_filter=any(f[1] is not None and 'pkg_resources' in f[1].pattern
                       for f in warnings.filters),
        root_has_rsvheat=MODELS.get('RSVHeat') is not None,
        prefixed=MODELS.get('rsvheat_mm.RSVHeat') is not None,
    )))
""")


def _run(code, env=None):
    proc = subprocess.run([PYTHON, '-c', code], cwd=ROOT, env=env or python_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _fingerprint(**env):
    out = _run(FINGERPRINT, python_env(**env))
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def default_fp():
    return _fingerprint()


def test_every_patch_is_listed_documented_and_in_the_readme():
    assert list(runtime_compat.PATCHES) == PATCH_NAMES
    doc = runtime_compat.__doc__
    with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
        readme = f.read()
    section = readme.split('## Compatibility fixes', 1)[1].split('\n## ', 1)[0]
    for name, patch in runtime_compat.PATCHES.items():
        assert f'``{name}``' in doc, name
        assert f'`{name}`' in section, name
        assert len(patch.reason) > 80 and 'Off:' in patch.reason, name
    assert 'RSVHEAT_COMPAT=none' in section and 'RSVHEAT_DISABLE_PATCHES' in section


def test_default_applies_only_what_this_stack_needs(default_fp):
    st = default_fp['status']
    assert st['root_registry'] == 'applied' and default_fp['root_has_rsvheat']
    assert st['atomic_writes'] == 'applied' and default_fp['backend'] == 'AtomicLocalBackend'
    # torch >= 2.6 in every tested stack
    assert st['safe_checkpoint'] == 'applied'
    assert default_fp['loader'] == 'rsvheat_mm.runtime_compat'
    # import rsvheat_mm imports no toolbox; the hook waits for them
    assert default_fp['toolboxes'] == []
    assert st['toolbox_import_hook'] == 'applied' and default_fp['hook']
    # collections untouched until mmrotate is imported
    assert default_fp['aliases'] == default_fp['before_aliases']
    if toolbox_installed('mmrotate') and sys.version_info >= (3, 10):
        assert st['collections_alias'].startswith('pending')
    if st['config_package_names'] == 'applied':  # a fork, e.g. onedl-mmsegmentation
        assert default_fp['module2package']['mmseg'] != 'mmsegmentation'
    else:
        assert st['config_package_names'].startswith('not needed')


def test_compat_none_switches_everything_off():
    fp = _fingerprint(RSVHEAT_COMPAT='none')
    assert set(fp['status'].values()) == {'disabled'}
    assert fp['backend'] == 'LocalBackend'
    assert fp['loader'] == 'mmengine.runner.checkpoint'
    assert not fp['hook'] and not fp['pkg_filter']
    assert fp['aliases'] == fp['before_aliases']
    assert not fp['root_has_rsvheat'] and fp['prefixed']
    # without the hook, the toolboxes are imported at once to register our parts
    installed = [t for t in ('mmpretrain', 'mmseg', 'mmdet', 'mmrotate') if toolbox_installed(t)]
    assert fp['toolboxes'] == sorted(installed)
    from mmengine.config.utils import MODULE2PACKAGE
    assert fp['module2package'] == {m: runtime_compat._original_names.get(m, d)
                                    for m, d in MODULE2PACKAGE.items()}


@pytest.mark.parametrize('name', PATCH_NAMES)
def test_each_patch_can_be_disabled_alone(name, default_fp):
    fp = _fingerprint(RSVHEAT_DISABLE_PATCHES=name)
    assert fp['status'][name] == 'disabled'
    others = {k: v for k, v in fp['status'].items() if k != name}
    expected = {k: v for k, v in default_fp['status'].items() if k != name}
    if name == 'toolbox_import_hook':
        # toolboxes imported at once: mmrotate's alias is decided now, not pending
        others.pop('collections_alias'), expected.pop('collections_alias')
    assert others == expected
    effect = {
        'root_registry': lambda f: not f['root_has_rsvheat'] and f['prefixed'],
        'toolbox_import_hook': lambda f: not f['hook'],
        'collections_alias': lambda f: f['aliases'] == f['before_aliases'],
        'safe_checkpoint': lambda f: f['loader'] == 'mmengine.runner.checkpoint',
        'atomic_writes': lambda f: f['backend'] == 'LocalBackend',
        'config_package_names': lambda f: not any(
            d.startswith('onedl-') for d in f['module2package'].values()),
        'pkg_resources_warning': lambda f: not f['pkg_filter'],
    }[name]
    assert effect(fp), fp


def test_unknown_patch_name_is_reported():
    proc = subprocess.run([PYTHON, '-c', 'import rsvheat_mm'], cwd=ROOT, capture_output=True,
                          text=True, env=python_env(RSVHEAT_DISABLE_PATCHES='atomic_write'))
    assert proc.returncode == 0
    assert "unknown patches ['atomic_write']" in proc.stderr and 'atomic_writes' in proc.stderr


@pytest.mark.skipif(not toolbox_installed('mmrotate'), reason='needs mmrotate')
def test_collections_alias_only_when_mmrotate_needs_it():
    out = _run("""
import collections, json
import rsvheat_mm
from rsvheat_mm import runtime_compat
added_at_import = [n for n in ('Sequence', 'Mapping') if hasattr(collections, n)]
import mmrotate.models  # official 1.0.0rc1 does `from collections import Sequence`
from mmrotate.registry import MODELS
print(json.dumps(dict(at_import=added_at_import, state=runtime_compat.status()['collections_alias'],
                      used=runtime_compat.collections_names_used_by('mmrotate'),
                      has_sequence=hasattr(collections, 'Sequence'),
                      head=MODELS.get('OrientedRPNHead') is not None)))
""")
    res = json.loads(out.strip().splitlines()[-1])
    assert res['at_import'] == [] and res['head']
    if res['used'] and sys.version_info >= (3, 10):
        # only the names mmrotate uses, added when it was imported
        assert res['state'] == 'applied' and res['has_sequence'] == ('Sequence' in res['used'])
    else:  # e.g. OneDL's mmrotate: nothing to add
        assert res['state'].startswith('not needed') and not res['has_sequence']


def test_collections_names_scan(tmp_path, monkeypatch):
    pkg = tmp_path / 'fakerot'
    (pkg / 'sub').mkdir(parents=True)
    (pkg / '__init__.py').write_text('from collections import OrderedDict\n')
    (pkg / 'sub' / '__init__.py').write_text(
        'from collections import (Sequence,\n    Mapping as M)\nimport collections\n'
        'x = collections.Iterable\ny = collections.abc.Sized\n# from collections import Set\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    used = runtime_compat.collections_names_used_by('fakerot')
    assert used == ['Iterable', 'Mapping', 'Sequence']
    assert runtime_compat.collections_names_used_by('no_such_package_here') == []


def test_without_mmrotate_nothing_waits_for_it():
    out = _run(FINGERPRINT, blocked_env('mmrotate'))
    fp = json.loads(out.strip().splitlines()[-1])
    assert fp['status']['collections_alias'] == 'not needed: mmrotate is not installed'
    assert fp['aliases'] == fp['before_aliases']


def test_undo_and_reapply_restore_mmengine():
    out = _run("""
import json, warnings
import rsvheat_mm
from rsvheat_mm import runtime_compat as rc
from mmengine.config.utils import MODULE2PACKAGE
from mmengine.fileio.backends import backends
from mmengine.runner.checkpoint import CheckpointLoader
table = dict(MODULE2PACKAGE)
res = {}
for name in ('atomic_writes', 'safe_checkpoint', 'toolbox_import_hook', 'config_package_names',
             'pkg_resources_warning'):
    rc.undo(name)
    res[name] = rc.status()[name]
res['backend'] = backends['local'].__name__
res['loader'] = CheckpointLoader._schemes[''].__module__
import sys
res['hook'] = any(type(f).__name__ == '_ToolboxImportHook' for f in sys.meta_path)
rc.apply(['atomic_writes', 'safe_checkpoint'])
res['backend2'] = backends['local'].__name__
res['loader2'] = CheckpointLoader._schemes[''].__module__
try:
    rc.undo('root_registry')
except RuntimeError as e:
    res['root'] = str(e)
print(json.dumps(res))
""")
    res = json.loads(out.strip().splitlines()[-1])
    assert res['atomic_writes'] == res['safe_checkpoint'] == 'disabled'
    assert res['backend'] == 'LocalBackend' and res['loader'] == 'mmengine.runner.checkpoint'
    assert not res['hook']
    assert res['backend2'] == 'AtomicLocalBackend' and res['loader2'] == 'rsvheat_mm.runtime_compat'
    assert 'RSVHEAT_DISABLE_PATCHES=root_registry' in res['root']


def test_fork_distribution_names_are_found_and_restored(monkeypatch):
    """A toolbox whose distribution has another name than mmengine expects."""
    import importlib.metadata

    from mmengine.config import Config
    from mmengine.config.utils import MODULE2PACKAGE
    from mmengine.utils import is_installed
    was_applied = runtime_compat.is_applied('config_package_names')
    if was_applied:  # OneDL: start from mmengine's own table
        runtime_compat.undo('config_package_names')
    try:
        provider = importlib.metadata.packages_distributions()['mmseg'][0]
        # The OneDL situation on any stack: mmengine's table names a
        # distribution that is not installed, while the module `mmseg` is.
        monkeypatch.setitem(MODULE2PACKAGE, 'mmseg', 'mmsegmentation-not-installed')
        assert not is_installed('mmsegmentation-not-installed')
        # (on OneDL the other toolboxes are forks as well)
        assert runtime_compat.forked_package_names()['mmseg'] == provider
        runtime_compat._apply_config_names()
        try:
            assert MODULE2PACKAGE['mmseg'] == provider
            cfg = Config.fromfile(os.path.join(
                ROOT, 'configs', 'segmentation', 'upernet_rsvheat-b_8xb2-80k_potsdam-512x512.py'))
            assert cfg.model.decode_head.type == 'UPerHead'  # from mmseg::_base_
        finally:
            runtime_compat._undo_config_names()
        assert MODULE2PACKAGE['mmseg'] == 'mmsegmentation-not-installed'
    finally:
        monkeypatch.undo()
        if was_applied:
            runtime_compat.apply(['config_package_names'])


def test_mmseg_base_loads_without_pkg_resources_warning():
    out = _run("""
import warnings
import rsvheat_mm
from mmengine.config import Config
with warnings.catch_warnings(record=True) as w:  # keeps the filters in place
    Config.fromfile('configs/segmentation/upernet_rsvheat-b_8xb2-80k_potsdam-512x512.py')
    Config.fromfile('configs/segmentation/upernet_rsvheat-b_8xb2-80k_potsdam-512x512.py')
    warnings.warn('an unrelated warning', UserWarning)
print([str(x.message)[:40] for x in w if issubclass(x.category, UserWarning)])
""")
    messages = out.strip().splitlines()[-1]
    assert 'pkg_resources' not in messages
    assert 'an unrelated warning' in messages


@pytest.mark.parametrize('umask', [0o022, 0o077, 0o002])
def test_atomic_write_honours_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write(b'x', tmp_path / 'new.bin')
        from mmengine.fileio import get_file_backend
        get_file_backend(str(tmp_path)).put(b'y', str(tmp_path / 'ckpt.pth'))
    finally:
        os.umask(old)
    for name in ('new.bin', 'ckpt.pth'):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~umask, name


def test_atomic_write_keeps_mode_of_replaced_file(tmp_path):
    target = tmp_path / 'secret.json'
    target.write_text('{}')
    os.chmod(target, 0o600)
    atomic_write('{"a": 1}', target)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert target.read_text() == '{"a": 1}'
    assert [p.name for p in tmp_path.iterdir()] == ['secret.json']


def test_report_lists_every_patch():
    out = _run('import rsvheat_mm.runtime_compat as c; print(c.report())')
    for name in PATCH_NAMES:
        assert re.search(rf'^{name}\s+\S', out, re.M), out
