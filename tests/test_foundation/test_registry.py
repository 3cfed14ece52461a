"""Registration: bare names under every toolbox scope, `rsvheat_mm.` prefix, laziness."""
import subprocess
import textwrap

import pytest
from mmengine.registry import DefaultScope

from tests.helpers import PYTHON, ROOT, python_env

TINY = dict(type='RSVHeat', arch=dict(depths=[1, 1, 1, 1], embed_dims=16),
            pretrain_img_size=64)


@pytest.mark.parametrize('scope, registry_module', [
    ('mmpretrain', 'mmpretrain.registry'),
    ('mmseg', 'mmseg.registry'),
    ('mmdet', 'mmdet.registry'),
    pytest.param('mmrotate', 'mmrotate.registry', marks=pytest.mark.needs_mmrotate),
])
def test_bare_name_resolves_under_each_default_scope(scope, registry_module):
    import importlib
    registry = importlib.import_module(registry_module).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(dict(TINY))
    assert type(model).__name__ == 'RSVHeat'
    # and the root registry holds it too (what the child scopes fall back to)
    from mmengine.registry import MODELS as ROOT_MODELS
    assert ROOT_MODELS.get('RSVHeat') is type(model)


def _run(code):
    proc = subprocess.run([PYTHON, '-c', textwrap.dedent(code)], cwd=ROOT, env=python_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_prefixed_name_resolves_without_custom_imports():
    # A fresh interpreter that never imports rsvheat_mm itself: mmengine
    # imports rsvheat_mm.registry for the scope and then its locations.
    out = _run("""
        import sys
        from mmseg.registry import MODELS
        from mmengine.registry import init_default_scope
        init_default_scope('mmseg')
        m = MODELS.build(dict(type='rsvheat_mm.RSVHeat',
                              arch=dict(depths=[1, 1, 1, 1], embed_dims=16),
                              pretrain_img_size=64))
        print(type(m).__module__, type(m).__name__)
    """)
    assert 'rsvheat_mm.models.backbones.rsvheat RSVHeat' in out


def test_custom_imports_in_config_makes_bare_name_work():
    out = _run("""
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        cfg = Config(dict(custom_imports=dict(imports=['rsvheat_mm'], allow_failed_imports=False),
                          model=dict(type='RSVHeat', arch=dict(depths=[1, 1, 1, 1], embed_dims=16),
                                     pretrain_img_size=64)))
        # Config(dict) does not run custom_imports; fromfile does -- emulate it
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
        init_default_scope('mmdet')
        from mmdet.registry import MODELS
        print(type(MODELS.build(cfg.model)).__name__)
    """)
    assert out.strip().endswith('RSVHeat')


def test_import_is_lazy_about_toolboxes():
    out = _run("""
        import sys
        import rsvheat_mm
        print('before:', sorted(m for m in ('mmpretrain', 'mmseg', 'mmdet', 'mmrotate')
                                if m in sys.modules))
        import mmseg
        from mmengine.registry import MODELS
        # toolbox-specific components appear once the toolbox is imported
        from rsvheat_mm.utils.plugins import registered_toolboxes
        print('after:', 'mmseg' in registered_toolboxes()
              and MODELS.get('CDSiameseEncoderDecoder') is not None)
    """)
    # (OneDL's toolboxes print "Could not import OneDL" on import)
    lines = [line for line in out.splitlines() if line.startswith(('before:', 'after:'))]
    assert lines == ['before: []', 'after: True'], out


def test_version_check_message():
    import rsvheat_mm
    # mmcv 2.2.0: between the official line (< 2.2) and OneDL's (2.3.x)
    with pytest.raises(ImportError, match=r'mmcv>=2.0.0,<2.2.0 \(official OpenMMLab line: mmcv\)'
                       r' or mmcv>=2.3.0,<2.4.0 \(OneDL line: onedl-mmcv\), but mmcv==2.2.0'):
        rsvheat_mm._check_versions({'mmcv': '2.2.0'})
    with pytest.raises(ImportError, match=r'needs mmengine, which is not installed.*'
                       r'RSVHEAT_STACK=onedl make install'):
        rsvheat_mm._check_versions({'mmengine': None})
    with pytest.raises(ImportError, match=r'torch>=2.4.0.*torch==2.3.1\+cpu'):
        rsvheat_mm._check_versions({'torch': '2.3.1+cpu'})
    # both lines' pinned sets pass
    rsvheat_mm._check_versions({'mmengine': '0.10.7', 'mmcv': '2.0.1', 'torch': '2.14.1'})
    rsvheat_mm._check_versions({'mmengine': '0.10.12', 'mmcv': '2.3.6', 'torch': '2.14.1'})


def test_installed_version_works_for_either_distribution():
    """Read from the module (version.py), whatever the distribution is called."""
    import importlib.metadata
    import sys

    import mmcv
    import mmengine

    import rsvheat_mm
    assert rsvheat_mm.installed_version('mmcv') == mmcv.__version__
    assert rsvheat_mm.installed_version('mmengine') == mmengine.__version__
    assert rsvheat_mm.installed_version('no_such_module_here') is None
    dists = {d for m in ('mmcv', 'mmengine')
             for d in importlib.metadata.packages_distributions().get(m, [])}
    assert dists & {'mmcv', 'onedl-mmcv'} and dists & {'mmengine', 'onedl-mmengine'}
    # without importing the package: from its version.py
    out = _run("""
        import sys, rsvheat_mm
        for name in [m for m in sys.modules if m == 'mmcv' or m.startswith('mmcv.')]:
            del sys.modules[name]
        print(rsvheat_mm.installed_version('mmcv'), 'mmcv' in sys.modules)
    """)
    assert out.split()[-2:] == [mmcv.__version__, 'False']
    assert sys.modules['mmcv'] is mmcv


@pytest.mark.needs_mmrotate
def test_mmrotate_imports_on_python311():
    out = _run("""
        import rsvheat_mm
        import mmrotate.models  # does `from collections import Sequence`
        from mmrotate.registry import MODELS
        print(MODELS.get('OrientedRPNHead') is not None)
    """)
    assert out.strip().endswith('True')
