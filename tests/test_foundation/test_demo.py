"""`make demo` (tools/demo.py) end to end in its quick mode: every stage and
every pre/post step on the bundled samples, 2 training iterations each
(`make test` and CI run it; `pytest -m "not slow"` leaves it out)."""
import glob
import os.path as osp
import re

import pytest

from tests.helpers import PYTHON, run_tool

STAGES = ('pretrain', 'cls', 'seg', 'det', 'rotated', 'cd')


@pytest.mark.slow
@pytest.mark.needs_mmrotate
def test_demo_runs_every_stage(tmp_path):
    out = run_tool([PYTHON, 'tools/demo.py', '--iters', '2', '--work-dir', str(tmp_path)],
                   timeout=900, OMP_NUM_THREADS=1)
    summary = (tmp_path / 'summary.md').read_text()
    for stage in STAGES:
        assert re.search(rf'^\| {stage} \|', summary, re.M), (stage, summary)
        assert osp.isfile(tmp_path / stage / 'iter_2.pth'), stage
    # every logged pretraining loss term reached the summary
    assert re.search(r'\| pretrain \|.*loss_spa [\d.]+, loss_fre [\d.]+, loss_con [\d.]+', summary)
    # the pretraining checkpoint initialised the downstream backbones, every
    # backbone tensor loaded (the change-detection stage starts from scratch)
    pretrained = re.escape(str(tmp_path / 'pretrain' / 'iter_2.pth'))
    for stage in ('cls', 'seg', 'det', 'rotated'):
        log = (tmp_path / f'{stage}.log').read_text()
        assert re.search(rf'RSVHeat: loaded (\d+)/\1 tensors from {pretrained}', log), stage
    # the pre/post steps' outputs
    assert osp.isfile(tmp_path / 'seg' / 'heat_diffusion.png')
    assert glob.glob(str(tmp_path / 'seg' / 'infer' / 'preds' / '*.tif'))
    assert osp.isfile(tmp_path / 'seg' / 'onnx' / 'upernet.onnx')
    for stage in ('det', 'rotated', 'cd'):  # tiled inference on the large scene / pair
        assert glob.glob(str(tmp_path / stage / 'huge' / 'preds' / '*')), stage
    assert 'Total:' in out
