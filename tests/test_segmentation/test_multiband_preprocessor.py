"""MultiBandSegDataPreProcessor: N-band normalisation on every mmseg line."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from tests.helpers import ROOT

FUSION = osp.join(ROOT, 'configs', 'segmentation',
                  'upernet_rsvheat-b_fusion_8xb4-40k_whu-opt-sar-256x256.py')


def _batch(*shapes):
    inputs = [torch.randint(0, 255, s, dtype=torch.uint8) for s in shapes]
    samples = [SegDataSample(metainfo=dict(img_path=f'img{i}.tif')) for i in range(len(shapes))]
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('bands', [1, 2, 4, 5, 6])
def test_normalises_any_number_of_bands(bands):
    init_default_scope('mmseg')
    mean, std = [10.0 * (b + 1) for b in range(bands)], [2.0 + b for b in range(bands)]
    pre = MODELS.build(dict(type='MultiBandSegDataPreProcessor', mean=mean, std=std))
    data = _batch((bands, 8, 8), (bands, 8, 8))
    out = pre(data, training=False)['inputs']
    want = torch.stack([(x.float() - torch.tensor(mean).view(-1, 1, 1))
                        / torch.tensor(std).view(-1, 1, 1) for x in data['inputs']])
    torch.testing.assert_close(out, want)


def test_bgr_to_rgb_and_padding_are_the_parents():
    init_default_scope('mmseg')
    pre = MODELS.build(dict(type='MultiBandSegDataPreProcessor', mean=[1.0, 2.0, 3.0],
                            std=[1.0, 1.0, 1.0], bgr_to_rgb=True, size=(8, 8)))
    assert pre.channel_conversion and pre._channel_conversion
    data = _batch((3, 6, 7))
    out = pre(data, training=False)['inputs'][0]
    x = data['inputs'][0].float()
    torch.testing.assert_close(out, x[[2, 1, 0]] - torch.tensor([1.0, 2.0, 3.0]).view(-1, 1, 1))


def test_band_mismatch_is_one_clear_error():
    init_default_scope('mmseg')
    pre = MODELS.build(dict(type='MultiBandSegDataPreProcessor', mean=[0.0] * 4, std=[1.0] * 4))
    with pytest.raises(ValueError, match=r'img0\.tif.*5 bands but mean/std have 4'):
        pre(_batch((5, 8, 8)))
    with pytest.raises(ValueError, match='differ in length'):
        MODELS.build(dict(type='MultiBandSegDataPreProcessor', mean=[0.0] * 4, std=[1.0] * 3))


def test_fusion_config_builds_its_four_band_preprocessor():
    """Optical RGB + SAR: 4 mean/std values, refused by mmengine's ImgDataPreprocessor."""
    cfg = Config.fromfile(FUSION)
    assert cfg.model.data_preprocessor.type == 'MultiBandSegDataPreProcessor'
    assert len(cfg.model.data_preprocessor.mean) == 4
    init_default_scope('mmseg')
    pre = MODELS.build(dict(cfg.model.data_preprocessor, size=None))
    assert pre.mean.flatten().tolist() == pytest.approx(cfg.model.data_preprocessor.mean)
    assert tuple(pre(_batch((4, 16, 16)))['inputs'].shape) == (1, 4, 16, 16)
