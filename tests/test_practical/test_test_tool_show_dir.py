"""tools/test.py --show-dir: drawings under the run's work dir, one <image>.png each."""
import os
import os.path as osp

import cv2
import pytest
import torch
from mmengine.config import Config

from tests.helpers import PYTHON, ROOT, run_tool
from tests.test_practical.conftest import CLS_DEMO, SEG_DEMO


def _checkpoint(config, path, scope):
    import importlib
    from mmengine.registry import DefaultScope, MODELS
    cfg = Config.fromfile(config)
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    if cfg.get('data_preprocessor') is not None and cfg.model.get('data_preprocessor') is None:
        cfg.model.data_preprocessor = cfg.data_preprocessor
    with DefaultScope.overwrite_default_scope(scope):
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
    torch.save({'state_dict': model.state_dict()}, path)
    return path


@pytest.mark.parametrize('config, scope, names', [
    (SEG_DEMO, 'mmseg', ['0']),  # the LoveDA val tile
    (CLS_DEMO, 'mmpretrain', ['2', '3', '4', '5', '6', '7', '8']),  # scenes-cls_ann.txt
], ids=['mmseg', 'mmpretrain'])
def test_show_dir_is_under_the_work_dir(tmp_path, config, scope, names):
    ckpt = _checkpoint(config, str(tmp_path / 'model.pth'), scope)
    work_dir = tmp_path / 'work'
    stray = osp.join(ROOT, 'vis')  # where mmseg's own hook would draw (tools run from ROOT)
    existed = osp.exists(stray)
    run_tool([PYTHON, 'tools/test.py', config, ckpt, '--work-dir', str(work_dir),
              '--show-dir', 'vis'], OMP_NUM_THREADS=1)
    drawn = sorted(os.listdir(work_dir / 'vis'))
    assert drawn == sorted(f'{n}.png' for n in names)
    img = cv2.imread(str(work_dir / 'vis' / drawn[0]))
    assert img is not None and img.ndim == 3
    assert existed or not osp.exists(stray)
