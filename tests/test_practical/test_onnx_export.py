"""ONNX export: ONNX Runtime equals PyTorch (backbone within 1e-4, segmentor too)."""
import json
import os.path as osp

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

from rsvheat_mm.apis.onnx_export import (ExportableAdaptiveAvgPool2d, check_onnx,
                                         export_backbone, prepare_for_export)
from rsvheat_mm.models.backbones.rsvheat import RSVHeat
from tests.test_practical.conftest import SEG_DEMO


def _backbone(**kwargs):
    torch.manual_seed(0)
    backbone = RSVHeat(arch=dict(depths=[1, 1, 2, 1], embed_dims=16), pretrain_img_size=64,
                       in_channels=dict(optical=3, sar=1), **kwargs)
    backbone.init_weights()
    # Random (non-zero) K so that the heat operator really diffuses.
    with torch.no_grad():
        for stage in backbone.stages:
            stage.fve.normal_(0, 1.0)
    return backbone.eval()


def test_backbone_onnx_matches_pytorch(tmp_path):
    backbone = _backbone()
    out = str(tmp_path / 'backbone.onnx')
    # non-square input, not a multiple of the pretraining grid
    info = export_backbone(backbone, out, (2, 3, 80, 112), modality='optical', atol=1e-4)
    assert [o['shape'] for o in info['outputs']] == [
        [2, 16, 20, 28], [2, 32, 10, 14], [2, 64, 5, 7], [2, 128, 3, 4]]
    assert max(info['max_abs_diff'].values()) < 1e-4
    # an independent check on a fresh input, against the original (non-deploy) backbone
    x = torch.randn(2, 3, 80, 112)
    sess = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    ort_outs = sess.run(None, {'input': x.numpy()})
    with torch.no_grad():
        ref = backbone(x, modality='optical')
    for r, o in zip(ref, ort_outs):
        np.testing.assert_allclose(o, r.numpy(), atol=1e-4, rtol=0)
    # deploy mode: no FVE / to_k weights in the file; the original is untouched
    names = {init.name for init in onnx.load(out).graph.initializer}
    assert not any('to_k' in n or 'fve' in n for n in names)
    assert not backbone.deploy and hasattr(backbone.stages[0], 'fve')


def test_backbone_onnx_sar_stem(tmp_path):
    backbone = _backbone()
    info = export_backbone(backbone, str(tmp_path / 'sar.onnx'), (1, 1, 64, 64), modality='sar')
    assert max(info['max_abs_diff'].values()) < 1e-4
    model = onnx.load(str(tmp_path / 'sar.onnx'))
    assert model.graph.input[0].type.tensor_type.shape.dim[1].dim_value == 1


def test_check_onnx_detects_a_mismatch(tmp_path):
    backbone = _backbone()
    out = str(tmp_path / 'bb.onnx')
    export_backbone(backbone, out, (1, 3, 64, 64), modality='optical', verify=False)
    from rsvheat_mm.apis.onnx_export import BackboneExportWrapper
    changed = _backbone()
    with torch.no_grad():
        changed.norm3.weight.add_(1e-2)  # 1 % on the last output
    with pytest.raises(AssertionError, match='differs from PyTorch'):
        check_onnx(out, BackboneExportWrapper(changed, 'optical').eval(),
                   [torch.randn(1, 3, 64, 64)])


def test_exportable_adaptive_pool_is_exact():
    for size, out in ((4, 6), (4, 3), (7, 3), (8, 6), (5, 1), (13, 2)):
        x = torch.randn(2, 3, size, size + 2)
        np.testing.assert_allclose(ExportableAdaptiveAvgPool2d(out)(x).numpy(),
                                   nn.AdaptiveAvgPool2d(out)(x).numpy(), atol=1e-6)


def test_prepare_for_export_leaves_model_alone():
    backbone = _backbone()
    prepared = prepare_for_export(backbone)
    assert prepared.deploy and not backbone.deploy
    block = prepared.stages[0].blocks[0]
    assert block.op.dct_impl == 'matmul'
    assert backbone.stages[0].blocks[0].op.dct_impl == 'auto'


def test_export_tool_segmentor(tmp_path):
    """tools/deployment/export_onnx.py on the demo UperNet: raw image in, logits and
    mask out; ONNX Runtime vs the model's own encode_decode path."""
    from tools.deployment.export_onnx import main
    out = str(tmp_path / 'upernet.onnx')
    # 96 px: a 3 x 3 stride-32 map, which UperNet's pyramid pools to 1, 2, 3 and 6
    info = main([SEG_DEMO, '--part', 'segmentor', '--shape', '96', '128', '--out', out])
    assert info['outputs'][0]['shape'] == [1, 7, 96, 128]
    assert info['max_abs_diff']['seg_logits'] < 1e-4
    assert info['max_abs_diff']['seg_mask'] < 1e-3
    with open(osp.splitext(out)[0] + '.json') as f:
        meta = json.load(f)
    assert meta['preprocess']['swap_rgb_bgr'] is True
    assert meta['preprocess']['mean'] == pytest.approx([123.675, 116.28, 103.53])
    assert meta['classes'][1] == 'building'
    # the exported graph runs on another image of the same size
    sess = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    logits, mask = sess.run(None, {'image': np.full((1, 3, 96, 128), 128, np.float32)})
    assert logits.shape == (1, 7, 96, 128) and mask.shape == (1, 96, 128)
    np.testing.assert_array_equal(mask, logits.argmax(1))


def test_export_tool_backbone_from_checkpoint(tmp_path):
    """The backbone of a config, weights from a (toolbox) checkpoint's backbone.* keys."""
    from mmengine.config import Config

    from rsvheat_mm.apis.onnx_export import build_backbone_from_config
    from tools.deployment.export_onnx import main
    cfg = Config.fromfile(SEG_DEMO)
    backbone = build_backbone_from_config(cfg)
    ckpt = str(tmp_path / 'seg.pth')
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in backbone.state_dict().items()},
                'meta': {}}, ckpt)
    out = str(tmp_path / 'bb.onnx')
    info = main([SEG_DEMO, '--checkpoint', ckpt, '--shape', '64', '64', '--out', out])
    assert info['modality'] == 'optical' and info['inputs'][0]['shape'] == [1, 3, 64, 64]
    x = torch.randn(1, 3, 64, 64)
    sess = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    with torch.no_grad():
        ref = backbone(x)
    for r, o in zip(ref, sess.run(None, {'input': x.numpy()})):
        np.testing.assert_allclose(o, r.numpy(), atol=1e-4, rtol=0)
