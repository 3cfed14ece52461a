"""RSVHeat by bare ``type='RSVHeat'`` inside each toolbox's own packaged configs.

For each toolbox: take a model config from the installed package (``_base_``
with mmengine's ``pkg::`` syntax), swap in a tiny RSVHeat, push a real image
from the bundled samples through the toolbox's own pipeline, run one training
step (finite loss, gradients reach the backbone) and one prediction.
"""
import os.path as osp
import xml.etree.ElementTree as ET

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope

from tests.helpers import DEMO_DATA, TINY_ARCH as TINY, TINY_DIMS as DIMS
META = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')


def _build(cfg_text, tmp_path, scope):
    path = tmp_path / 'cfg.py'
    path.write_text(cfg_text)
    cfg = Config.fromfile(str(path))
    import importlib
    registry = importlib.import_module(f'{scope}.registry')
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.MODELS.build(cfg.model)
    model = revert_sync_batchnorm(model)  # SyncBN needs CUDA + a process group
    model.init_weights()
    return cfg, model, registry


def _step_and_predict(model, data, scope):
    torch.manual_seed(0)
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-4))
    model.train()
    stem = model.backbone.stems['optical'].conv1.weight
    before = stem.detach().clone()
    with DefaultScope.overwrite_default_scope(scope):
        losses = model.train_step(data, optim)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total), losses
    # the optimizer step moved the first backbone layer: gradients flowed
    # from the toolbox's losses through the whole backbone
    assert not torch.equal(stem.detach(), before)
    model.eval()
    with torch.no_grad(), DefaultScope.overwrite_default_scope(scope):
        return model.test_step(data)


def _pipeline(transforms, results, scope):
    samples = results if isinstance(results, list) else [results]
    with DefaultScope.overwrite_default_scope(scope):
        pipeline = Compose(transforms)
        return pseudo_collate([pipeline(dict(r)) for r in samples])


def test_mmpretrain_image_classifier(tmp_path):
    cfg, model, reg = _build(f"""
_base_ = ['mmpretrain::_base_/models/resnet18.py']
custom_imports = dict(imports=['rsvheat_mm'], allow_failed_imports=False)
model = dict(
    data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=2,
                           mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           to_rgb=True),
    backbone=dict(_delete_=True, type='RSVHeat', arch={TINY}, pretrain_img_size=64,
                  in_channels=dict(optical=3), out_indices=(3, )),
    head=dict(num_classes=2, in_channels=128, topk=(1, )))
""", tmp_path, 'mmpretrain')
    data = _pipeline([
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(64, 64)),
        dict(type='PackInputs'),
    ], dict(img_path=osp.join(DEMO_DATA, 'scenes', '1.png'), gt_label=1), 'mmpretrain')
    out = _step_and_predict(model, data, 'mmpretrain')
    assert out[0].pred_score.shape == (2, )
    assert torch.isclose(out[0].pred_score.sum(), torch.tensor(1.0))


def test_mmseg_upernet(tmp_path):
    cfg, model, reg = _build(f"""
_base_ = ['{osp.abspath('configs/_base_/models/upernet_rsvheat.py')}']
model = dict(
    data_preprocessor=dict(size=(128, 128)),
    backbone=dict(arch={TINY}, pretrain_img_size=64, in_channels=dict(optical=3)),
    decode_head=dict(in_channels={DIMS}, channels=16, num_classes=6),
    auxiliary_head=dict(in_channels=64, channels=8, num_classes=6))
""", tmp_path, 'mmseg')
    # the ISPRS Potsdam and Vaihingen crops share the 6-class label ids
    # (batch of 2: UperNet's pooled BatchNorm needs more than one value)
    samples = [
        dict(img_path=osp.join(DEMO_DATA, ds, 'img_dir', name),
             seg_map_path=osp.join(DEMO_DATA, ds, 'ann_dir', name),
             reduce_zero_label=True, seg_fields=[])
        for ds, name in (('potsdam', '2_10_0_0_512_512.png'),
                         ('vaihingen', 'area1_0_0_512_512.png'))
    ]
    data = _pipeline([
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='Resize', scale=(128, 128)),
        dict(type='PackSegInputs'),
    ], samples, 'mmseg')
    out = _step_and_predict(model, data, 'mmseg')
    assert out[0].pred_sem_seg.data.shape == (1, 512, 512)  # back to the original size


def _dior_horizontal_box():
    xml = osp.join(DEMO_DATA, 'dior', 'Annotations', 'Oriented Bounding Boxes', '00001.xml')
    obj = ET.parse(xml).getroot().find('object')
    rb = obj.find('robndbox')
    corners = ('left_top', 'right_top', 'right_bottom', 'left_bottom')
    xs = [float(rb.find(f'x_{c}').text) for c in corners]
    ys = [float(rb.find(f'y_{c}').text) for c in corners]
    return [min(xs), min(ys), max(xs), max(ys)]


def test_mmdet_faster_rcnn(tmp_path):
    cfg, model, reg = _build(f"""
_base_ = ['mmdet::_base_/models/faster-rcnn_r50_fpn.py']
custom_imports = dict(imports=['rsvheat_mm'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='RSVHeat', arch={TINY}, pretrain_img_size=64,
                  in_channels=dict(optical=3)),
    neck=dict(in_channels={DIMS}, out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(bbox_roi_extractor=dict(out_channels=32),
                  bbox_head=dict(in_channels=32, fc_out_channels=64, num_classes=20)),
    # one training step: keep every candidate, so the output path (NMS,
    # rescaling to the original image) always has boxes to handle
    test_cfg=dict(rcnn=dict(score_thr=0.0)))
""", tmp_path, 'mmdet')
    data = _pipeline([
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Resize', scale=(256, 256), keep_ratio=True),
        dict(type='PackDetInputs', meta_keys=META),
    ], dict(img_path=osp.join(DEMO_DATA, 'dior', 'JPEGImages', '00001.jpg'), img_id='00001',
            instances=[dict(bbox=_dior_horizontal_box(), bbox_label=7, ignore_flag=0)]),
        'mmdet')
    out = _step_and_predict(model, data, 'mmdet')
    pred = out[0].pred_instances
    boxes = pred.bboxes
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) > 0
    assert len(pred.scores) == len(pred.labels) == len(boxes)
    assert pred.labels.min() >= 0 and pred.labels.max() < 20
    # rescaled from the 256 px input to the 800 px original and clipped to it
    assert boxes.min() >= 0 and boxes[:, [0, 2]].max() <= 800 and boxes[:, [1, 3]].max() <= 800
    assert boxes[:, 2:].max() > 256  # not left in the resized frame
    assert (boxes[:, 2:] >= boxes[:, :2]).all()


def _dota_quads():
    path = osp.join(DEMO_DATA, 'dota', 'labelTxt', 'P2805__1024__0___0.txt')
    scale = 170 / 1024  # labels are in the 1024-px patch frame, the PNG is 170 px
    quads = []
    for line in open(path):
        parts = line.split()
        quads.append([float(v) * scale for v in parts[:8]])
    return quads


@pytest.mark.needs_mmrotate
def test_mmrotate_oriented_rcnn(tmp_path):
    cfg, model, reg = _build(f"""
_base_ = ['mmrotate::oriented_rcnn/oriented-rcnn-le90_r50_fpn_1x_dota.py']
model = dict(
    backbone=dict(_delete_=True, type='RSVHeat', arch={TINY}, pretrain_img_size=64,
                  in_channels=dict(optical=3)),
    neck=dict(in_channels={DIMS}, out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(bbox_roi_extractor=dict(out_channels=32),
                  bbox_head=dict(in_channels=32, fc_out_channels=64)),
    test_cfg=dict(rcnn=dict(score_thr=0.0)))  # keep every candidate (see mmdet)
custom_imports = dict(imports=['rsvheat_mm'], allow_failed_imports=False)
""", tmp_path, 'mmrotate')
    instances = [dict(bbox=q, bbox_label=0, ignore_flag=0) for q in _dota_quads()]
    data = _pipeline([
        dict(type='mmdet.LoadImageFromFile'),
        dict(type='mmdet.LoadAnnotations', with_bbox=True, box_type='qbox'),
        dict(type='ConvertBoxType', box_type_mapping=dict(gt_bboxes='rbox')),
        dict(type='mmdet.Resize', scale=(256, 256), keep_ratio=True),
        dict(type='mmdet.PackDetInputs', meta_keys=META),
    ], dict(img_path=osp.join(DEMO_DATA, 'dota', 'images', 'P2805__1024__0___0.png'),
            img_id='P2805__1024__0___0', instances=instances), 'mmrotate')
    out = _step_and_predict(model, data, 'mmrotate')
    boxes = out[0].pred_instances.bboxes
    boxes = getattr(boxes, 'tensor', boxes)
    assert boxes.ndim == 2 and boxes.shape[-1] == 5 and len(boxes) > 0  # (cx, cy, w, h, a)
    # centres in the 170 px original image (rescaled from the 256 px input)
    assert boxes[:, :2].min() >= -1 and boxes[:, :2].max() <= 171
