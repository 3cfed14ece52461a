"""Fusion neck, pair data preprocessor and the siamese segmentor."""
import os.path as osp

import mmcv
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from rsvheat_mm.models.necks import CDFusionNeck
from tests.helpers import DEMO_DATA, TINY_DIMS as DIMS


def test_fusion_policies():
    torch.manual_seed(0)
    fa = [torch.randn(2, c, 8 // (i + 1), 6) for i, c in enumerate(DIMS)]
    fb = [torch.randn_like(f) for f in fa]
    neck = CDFusionNeck(DIMS, policy=['concat', 'diff', 'abs_diff', 'concat'])
    out = neck(fa, fb)
    assert neck.out_channels == [32, 32, 64, 256]
    torch.testing.assert_close(out[0], torch.cat([fa[0], fb[0]], 1))
    torch.testing.assert_close(out[1], fb[1] - fa[1])
    torch.testing.assert_close(out[2], (fa[2] - fb[2]).abs())
    projected = CDFusionNeck(DIMS, policy='concat', out_channels=DIMS)
    assert [o.shape[1] for o in projected(fa, fb)] == DIMS
    with pytest.raises(ValueError, match='unknown policy'):
        CDFusionNeck(DIMS, policy='ratio')
    with pytest.raises(ValueError, match='level 1'):
        neck(fa, [fb[0], fb[1][:, :5]] + fb[2:])


def test_preprocessor_normalises_each_date_and_swaps_channels_per_date():
    from mmseg.registry import MODELS
    pre = MODELS.build(dict(type='BitemporalDataPreProcessor', mean=[10., 20., 30.],
                            std=[1., 2., 4.], bgr_to_rgb=True, size_divisor=32))
    a = torch.randint(0, 255, (3, 40, 50), dtype=torch.uint8)
    b = torch.randint(0, 255, (3, 40, 50), dtype=torch.uint8)
    sample = SegDataSample(metainfo=dict(img_path='p.png'))
    sample.gt_sem_seg = PixelData(data=torch.zeros(1, 40, 50, dtype=torch.uint8))
    out = pre(dict(inputs=[torch.cat([a, b])], data_samples=[sample]), training=True)
    x = out['inputs'][0]
    assert x.shape == (6, 64, 64)  # padded to the divisor
    # each date is reversed to RGB, then normalised with the (RGB) mean/std
    ref_a = (a.flip(0).float() - torch.tensor([10., 20., 30.])[:, None, None]) / torch.tensor(
        [1., 2., 4.])[:, None, None]
    torch.testing.assert_close(x[:3, :40, :50], ref_a)
    ref_b = (b.flip(0).float() - torch.tensor([10., 20., 30.])[:, None, None]) / torch.tensor(
        [1., 2., 4.])[:, None, None]
    torch.testing.assert_close(x[3:, :40, :50], ref_b)
    with pytest.raises(ValueError, match='p.png has 4 channels per date'):
        pre(dict(inputs=[torch.zeros(8, 4, 4)], data_samples=[sample]), training=False)


def _model(policy='abs_diff', **kwargs):
    from mmseg.registry import MODELS
    cfg = dict(
        type='CDSiameseEncoderDecoder',
        data_preprocessor=dict(type='BitemporalDataPreProcessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
                               size_divisor=32),
        backbone=dict(type='RSVHeat', arch=dict(depths=[1, 1, 1, 1], embed_dims=16),
                      in_channels=dict(optical=3), pretrain_img_size=64),
        fusion_neck=dict(type='CDFusionNeck', in_channels=DIMS, policy=policy),
        decode_head=dict(type='FPNHead', in_channels=[c * (2 if policy == 'concat' else 1)
                                                      for c in DIMS],
                         in_index=[0, 1, 2, 3], feature_strides=[4, 8, 16, 32], channels=16,
                         num_classes=2, norm_cfg=dict(type='BN', requires_grad=True),
                         loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        test_cfg=ConfigDict(mode='whole'))
    cfg.update(kwargs)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model.eval()


def _real_pair(h=96, w=128):
    a = mmcv.imread(osp.join(DEMO_DATA, 'loveda/img_dir/0.png'))[200:200 + h, 300:300 + w]
    b = mmcv.imread(osp.join(DEMO_DATA, 'loveda/img_dir/1.png'))[200:200 + h, 300:300 + w]
    return (torch.from_numpy(a).permute(2, 0, 1), torch.from_numpy(b).permute(2, 0, 1))


def _batch(a, b, label=None):
    s = SegDataSample(metainfo=dict(img_path='a.png', img_shape=a.shape[1:],
                                    ori_shape=a.shape[1:]))
    if label is not None:
        s.gt_sem_seg = PixelData(data=label[None])
    return dict(inputs=[torch.cat([a, b])], data_samples=[s])


def test_siamese_shares_the_backbone_and_is_symmetric_with_abs_diff():
    model = _model('abs_diff')
    a, b = _real_pair()
    with torch.no_grad():
        ab = model.test_step(_batch(a, b))[0].seg_logits.data
        ba = model.test_step(_batch(b, a))[0].seg_logits.data
        aa = model.test_step(_batch(a, a))[0].seg_logits.data
    assert ab.shape == (2, 96, 128)
    torch.testing.assert_close(ab, ba)  # |f(a) - f(b)| does not care about the order
    assert not torch.allclose(ab, aa)   # ... but does see the change
    # one backbone: the features of each date equal a single-image pass
    x = model.data_preprocessor(_batch(a, b), False)['inputs']
    fa, fb = model.extract_dates(x)
    torch.testing.assert_close(fa[0], model.backbone(x[:, :3])[0])
    torch.testing.assert_close(fb[3], model.backbone(x[:, 3:])[3])


def test_concat_is_order_aware_and_trains():
    model = _model('concat')
    a, b = _real_pair()
    with torch.no_grad():
        ab = model.test_step(_batch(a, b))[0].seg_logits.data
        ba = model.test_step(_batch(b, a))[0].seg_logits.data
    assert not torch.allclose(ab, ba)
    model.train()
    label = torch.zeros(96, 128, dtype=torch.int64)
    label[20:50, 30:90] = 1
    losses = model.loss(*model.data_preprocessor(_batch(a, b, label), True).values())
    assert set(losses) >= {'decode.loss_ce', 'decode.acc_seg'}
    losses['decode.loss_ce'].backward()
    assert model.backbone.stems['optical'].conv1.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='stacked pairs'):
        model.extract_feat(torch.zeros(1, 3, 64, 64))
