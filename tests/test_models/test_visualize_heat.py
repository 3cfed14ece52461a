"""tools/analysis/visualize_heat.py on a bundled scene."""
import os.path as osp

import torch

from tests.helpers import DEMO_DATA, ROOT, load_tool

CONFIG = osp.join(ROOT, 'configs/demo/upernet_rsvheat-demo_1xb2-40iter_loveda-samples-256x256.py')


def _tool():
    return load_tool('analysis/visualize_heat.py')


def test_figure_and_maps(tmp_path):
    tool = _tool()
    out = tmp_path / 'heat.png'
    rows = tool.main([osp.join(DEMO_DATA, 'scenes', '3.png'), '--config', CONFIG,
                      '--size', '128', '--point', '100', '500', '--out', str(out)])
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert [r['size'] for r in rows] == [(32, 32), (16, 16), (8, 8), (4, 4)]
    for r in rows:
        assert r['energy_in'].shape == r['kernel'].shape == r['size']


def test_kernel_spreads_with_conductivity():
    """The reported spread follows K: none at K=0, wider for larger K."""
    tool = _tool()
    model, pre = tool.build_backbone(CONFIG, None)
    x = torch.randn(3, 128, 128)
    radii = []
    for bias in (-10.0, 1.0, 20.0):  # K = ReLU(to_k(FVE)) ~ ReLU(bias)
        with torch.no_grad():
            for stage in model.stages:
                for blk in stage.blocks:
                    blk.op.to_k.weight.zero_()
                    blk.op.to_k.bias.fill_(bias)
        rows = tool.analyse(model, x, (64, 64), -1)
        radii.append(rows[0]['r50_px'])
    assert radii[0] == 0
    assert radii[0] < radii[1] < radii[2]
