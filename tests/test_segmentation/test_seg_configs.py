"""Potsdam, iSAID and AIR-PolSAR-Seg configs: raw release format -> the
preparation tool -> two training iterations -> evaluation with the paper's
metric."""
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.test_segmentation import fixtures
from tests.test_segmentation.utils import (check_seg_evaluator, load, shrink,
                                           train_and_validate)

POTSDAM = 'configs/segmentation/upernet_rsvheat-b_8xb2-80k_potsdam-512x512.py'
ISAID = 'configs/segmentation/upernet_rsvheat-b_8xb2-80k_isaid-896x896.py'
AIR = 'configs/segmentation/upernet_rsvheat-b_8xb2-40k_air-polsar-seg-512x512.py'


def test_potsdam_mmseg_converter_and_config(tmp_path):
    from tools.dataset_converters import mmseg_converter
    raw = fixtures.make_potsdam_raw(tmp_path)
    out = tmp_path / 'potsdam'
    os.makedirs(tmp_path / 'extract')
    mmseg_converter.main(['potsdam', raw, '-o', str(out), '--clip_size', '256',
                          '--stride_size', '256', '--tmp_dir', str(tmp_path / 'extract')])
    for split in ('train', 'val'):
        names = sorted(os.listdir(out / 'img_dir' / split))
        assert len(names) == 4 and names == sorted(os.listdir(out / 'ann_dir' / split))
    # the colour label tile came back as the bundled ids
    lab = cv2.imread(str(out / 'ann_dir' / 'train' / '2_10_0_0_256_256.png'), 0)
    ref = cv2.imread(os.path.join(fixtures.DEMO_DATA, 'potsdam', 'ann_dir',
                                  '2_10_0_0_512_512.png'), 0)
    np.testing.assert_array_equal(lab, ref[:256, :256])

    cfg = load(POTSDAM)
    assert cfg.train_dataloader.dataset.type == 'PotsdamDataset' and cfg.crop_size == (512, 512)
    runner, metrics = train_and_validate(shrink(cfg, out, tmp_path / 'work'))
    assert {'mF1', 'mIoU', 'OA'} <= set(metrics)
    assert metrics['mF1'] == metrics['mFscore']
    assert runner.val_evaluator.metrics[0].exclude_from_mean == ('clutter', )
    # the paper's metric against the oracle, clutter left out of the means
    check_seg_evaluator(runner, exclude=('clutter', ))


def test_isaid_mmseg_converter_and_config(tmp_path):
    from tools.dataset_converters import mmseg_converter
    raw = fixtures.make_isaid_raw(tmp_path)
    out = tmp_path / 'iSAID'
    mmseg_converter.main(['isaid', raw, '-o', str(out), '--patch_width', '128',
                          '--patch_height', '128', '--overlap_area', '32'])
    train = sorted(os.listdir(out / 'ann_dir' / 'train'))
    assert len(train) == 4 and all(n.endswith('_instance_color_RGB.png') for n in train)
    # palette PNGs: read the indices as mmseg's LoadAnnotations does (pillow)
    planes = sum(int((np.array(Image.open(out / 'ann_dir' / 'train' / n)) == 14).sum())
                 for n in train)
    assert planes > 0  # the plane boxes became iSAID class 14

    cfg = load(ISAID)
    assert cfg.train_dataloader.dataset.type == 'iSAIDDataset' and cfg.crop_size == (896, 896)
    runner, metrics = train_and_validate(shrink(cfg, out, tmp_path / 'work'))
    assert 'mIoU' in metrics
    check_seg_evaluator(runner)


def test_air_polsar_seg_converter_and_config(tmp_path):
    from tools.dataset_converters import air_polsar_seg
    raw = fixtures.make_air_polsar_raw(tmp_path)
    out = tmp_path / 'air-polsar-seg'
    counts = air_polsar_seg.main([raw, '-o', str(out)])
    assert counts == dict(train=2, test=1)  # from the release's train/ and test/ folders
    img = cv2.imread(str(out / 'img_dir' / 'train' / '1.png'), cv2.IMREAD_UNCHANGED)
    assert img.shape == (512, 512) and img.dtype == np.uint8
    # span: RMS amplitude of the four polarisations
    import tifffile
    amps = [tifffile.imread(os.path.join(raw, 'train', f'1_{p}.tiff')).astype(float)
            for p in ('HH', 'HV', 'VH', 'VV')]
    expected = np.rint(np.sqrt(np.mean([a**2 for a in amps], axis=0)))
    np.testing.assert_array_equal(img, expected.astype(np.uint8))
    ids = cv2.imread(str(out / 'ann_dir' / 'train' / '1.png'), 0)
    lab = fixtures.loveda(1)[1][:512, :512]
    np.testing.assert_array_equal(ids, fixtures.LOVEDA_TO_AIR[lab])

    # one polarisation only; a random split when there are no split folders
    flat = tmp_path / 'flat'
    os.makedirs(flat)
    for name in os.listdir(os.path.join(raw, 'train')):
        os.link(os.path.join(raw, 'train', name), flat / name)
    counts = air_polsar_seg.main([str(flat), '-o', str(tmp_path / 'hh'), '--band', 'HH',
                                  '--test-ratio', '0.5'])
    assert counts == dict(train=1, test=1)
    hh = cv2.imread(str(next((tmp_path / 'hh' / 'img_dir').rglob('1.png'))), -1)
    np.testing.assert_array_equal(hh, amps[0].astype(np.uint8))

    cfg = load(AIR)
    assert cfg.model.backbone.default_modality == 'sar'
    runner, metrics = train_and_validate(shrink(cfg, out, tmp_path / 'work'))
    assert 'mIoU' in metrics
    check_seg_evaluator(runner)
    # the 1-band input goes through the SAR stem only
    model = runner.model
    model.zero_grad(set_to_none=True)
    data = model.data_preprocessor(next(iter(runner.train_dataloader)), True)
    assert data['inputs'].shape[1] == 1
    losses = model(**data, mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert model.backbone.stems.sar.conv1.weight.grad.abs().sum() > 0
    assert model.backbone.stems.optical.conv1.weight.grad is None


def test_air_polsar_seg_converter_rejects_unknown_colours(tmp_path):
    from tools.dataset_converters import air_polsar_seg
    raw = fixtures.make_air_polsar_raw(tmp_path)
    gt = os.path.join(raw, 'test', '3_gt.png')
    lab = cv2.imread(gt)
    lab[:2, :2] = (7, 8, 9)
    cv2.imwrite(gt, lab)
    with pytest.raises(ValueError, match=r'3_gt\.png: colours not in .*\(9,8,7\) x4'):
        air_polsar_seg.main([raw, '-o', str(tmp_path / 'out')])
    os.remove(os.path.join(raw, 'test', '3_VV.tiff'))
    with pytest.raises(FileNotFoundError, match=r"lacks polarisation\(s\) \['VV'\]"):
        air_polsar_seg.main([raw, '-o', str(tmp_path / 'out')])


def test_default_modality_selects_the_stem():
    """README: ``forward(x, modality=...)`` > ``use_modality()`` >
    ``default_modality`` > the input's band count. The AIR-PolSAR-Seg config
    sets ``default_modality='sar'``: its SAR stem runs even for an input whose
    band count would pick another stem (e.g. a 3-band SAR composite)."""
    import torch
    from mmseg.registry import MODELS
    backbone_cfg = shrink(load(AIR), '.', '.').model.backbone
    backbone_cfg.in_channels = dict(optical=3, sar=3)  # band count cannot decide
    torch.manual_seed(0)
    backbone = MODELS.build(backbone_cfg)
    backbone.init_weights()
    assert backbone.default_modality == 'sar'
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        default = backbone(x)[-1]
        sar = backbone(x, modality='sar')[-1]
        optical = backbone(x, modality='optical')[-1]
        with backbone.use_modality('optical'):
            context = backbone(x)[-1]
            explicit = backbone(x, modality='sar')[-1]
    torch.testing.assert_close(default, sar)
    torch.testing.assert_close(context, optical)
    torch.testing.assert_close(explicit, sar)
    assert (default - optical).abs().max() > 1e-2
    # the gradient reaches the default stem only (a LayerNorm'd output sums
    # to zero over channels: take its square)
    backbone(x)[-1].square().sum().backward()
    assert backbone.stems.sar.conv1.weight.grad.abs().sum() > 0
    grad = backbone.stems.optical.conv1.weight.grad
    assert grad is None or not grad.any()
    # without a default, an ambiguous band count is an error, not a guess
    backbone_cfg.default_modality = None
    with pytest.raises(ValueError, match='cannot choose a stem for a 3-band input'):
        MODELS.build(backbone_cfg)(x)
