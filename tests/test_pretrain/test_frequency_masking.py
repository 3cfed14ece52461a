"""Frequency-domain hierarchical masking on real bundled images: the two views
split the spectrum exactly, the sector follows the configured ratio, a
co-registered pair shares one mask, and the optional dropped band is in
neither view."""
import math
import os.path as osp

import mmcv
import numpy as np
import pytest
import tifffile
import torch
from scipy import fft as sp_fft

from rsvheat_mm.datasets.pretrain_datasets import simulate_sar_standin
from rsvheat_mm.datasets.transforms.frequency_masking import (PackRSVHeatPretrainInputs,
                                                              RSVHeatFrequencyMasking,
                                                              frequency_band_masks,
                                                              frequency_sector_mask)


def dct(x):
    return sp_fft.dctn(np.asarray(x, dtype=np.float64), norm='ortho', axes=(0, 1))


def radius(h, w):
    return np.sqrt((np.arange(h) / h)[:, None]**2 + (np.arange(w) / w)[None, :]**2)


@pytest.fixture(scope='module')
def scene(demo_data):
    # A non-square crop of a real aerial scene (RGBA file, alpha dropped).
    img = mmcv.imread(osp.join(demo_data, 'scenes', '3.png'), channel_order='rgb')
    return np.ascontiguousarray(img[100:196, 200:330]).astype(np.float32)


@pytest.fixture(scope='module')
def images(scene, demo_data):
    ms = tifffile.imread(osp.join(demo_data, 'multispectral', 'uint16-5channel.tif'))
    return dict(
        rgb=scene,
        # One-band stand-in SAR (2-D, as cv2 returns one-band images).
        sar=simulate_sar_standin(scene, rng=np.random.default_rng(0)),
        ms5=ms.astype(np.float32))


@pytest.mark.parametrize('kind', ['rgb', 'sar', 'ms5'])
@pytest.mark.parametrize('mode', ['area', 'radius'])
def test_views_split_the_spectrum_exactly(images, kind, mode):
    img = images[kind]
    np.random.seed(0)
    out = RSVHeatFrequencyMasking(ratio_range=0.25, ratio_mode=mode)(dict(img=img.copy()))
    low, high, mask = out['img_low'], out['img_high'], out['freq_mask']
    assert low.shape == img.shape and high.shape == img.shape
    assert low.dtype == np.float32 and mask.dtype == bool and mask.shape == img.shape[:2]

    scale = np.abs(img).max()
    # Complementary masks: the two views add up to the image.
    np.testing.assert_allclose(low + high, img, atol=1e-5 * scale)
    # Each view holds exactly its part of the spectrum (the other part is 0).
    keep = mask if img.ndim == 2 else mask[..., None]
    spec = dct(img)
    tol = 1e-5 * np.abs(spec).max()
    np.testing.assert_allclose(dct(low), spec * keep, atol=tol)
    np.testing.assert_allclose(dct(high), spec * ~keep, atol=tol)
    # Both views carry real content.
    assert np.abs(high).mean() > 1e-3 * scale and np.abs(low).mean() > 1e-3 * scale
    # DC handling: the mean of every band is in the low view, the high view
    # has zero mean.
    assert mask[0, 0]
    np.testing.assert_allclose(high.mean(axis=(0, 1)), 0, atol=1e-5 * scale)
    np.testing.assert_allclose(low.mean(axis=(0, 1)), img.mean(axis=(0, 1)), rtol=1e-5,
                               atol=1e-5 * scale)


@pytest.mark.parametrize('size', [(64, 64), (96, 130), (7, 5)])
@pytest.mark.parametrize('ratio', [0.01, 0.2, 0.25, 0.3, 0.9])
def test_area_ratio_is_exact_and_sector_shaped(size, ratio):
    h, w = size
    mask = frequency_sector_mask(size, ratio, 'area')
    assert mask.sum() == max(1, round(ratio * h * w))
    assert mask[0, 0]
    # A quarter disc in normalised frequency: everything inside is at most as
    # far from DC as anything outside.
    r = radius(h, w)
    assert r[mask].max() <= r[~mask].min() + 1e-12


@pytest.mark.parametrize('ratio', [0.1, 0.25, 0.3])
def test_radius_mode_is_a_fraction_of_the_diagonal(ratio):
    size = (224, 160)
    mask = frequency_sector_mask(size, ratio, 'radius')
    np.testing.assert_array_equal(mask, radius(*size) <= ratio * math.sqrt(2))
    # Area of a quarter disc of radius ratio * sqrt(2) in the unit square.
    assert mask.mean() == pytest.approx(math.pi * ratio**2 / 2, rel=0.05)


def test_drawn_ratio_follows_the_configured_range(scene):
    transform = RSVHeatFrequencyMasking(ratio_range=(0.2, 0.3))
    img = scene[:64, :64]
    np.random.seed(0)
    ratios, fractions = [], []
    for _ in range(150):
        out = transform(dict(img=img))
        ratios.append(out['mask_ratio'])
        fractions.append(out['freq_mask'].mean())
        assert out['mask_fraction'] == out['freq_mask'].mean()
        assert out['mask_fraction'] == round(out['mask_ratio'] * 64 * 64) / (64 * 64)
    ratios, fractions = np.array(ratios), np.array(fractions)
    half_step = 0.5 / (64 * 64)
    assert fractions.min() >= 0.2 - half_step and fractions.max() <= 0.3 + half_step
    # Uniform over the range: spread over all of it, centred on 0.25.
    assert ratios.min() < 0.21 and ratios.max() > 0.29
    assert abs(ratios.mean() - 0.25) < 0.01
    # Default: the paper's 20-30 % of the coefficients.
    default = RSVHeatFrequencyMasking()
    assert default.ratio_range == (0.2, 0.3) and default.ratio_mode == 'area'


def test_pair_shares_one_mask(scene):
    sar = simulate_sar_standin(scene, rng=np.random.default_rng(1))[..., None]
    transform = RSVHeatFrequencyMasking(ratio_range=(0.2, 0.3))
    masks = set()
    np.random.seed(3)
    for _ in range(3):
        out = transform(dict(img=scene.copy(), partner_img=sar.copy()))
        mask = out['freq_mask']
        masks.add(mask.tobytes())
        # The partner's views are split by the image's mask.
        spec = dct(sar)
        tol = 1e-5 * np.abs(spec).max()
        np.testing.assert_allclose(dct(out['partner_img_low']), spec * mask[..., None], atol=tol)
        np.testing.assert_allclose(dct(out['partner_img_high']), spec * ~mask[..., None],
                                   atol=tol)
        np.testing.assert_allclose(out['partner_img_low'] + out['partner_img_high'], sar,
                                   atol=1e-3)
    assert len(masks) == 3  # a new geometry per sample, one per pair

    # A partner on a coarser grid: the same sector in normalised frequency.
    small = sar[::2, ::2]
    out = transform(dict(img=scene.copy(), partner_img=small.copy()))
    small_mask = frequency_sector_mask(small.shape[:2], out['mask_ratio'])
    spec = dct(small)
    np.testing.assert_allclose(dct(out['partner_img_low']), spec * small_mask[..., None],
                               atol=1e-5 * np.abs(spec).max())
    assert small_mask.mean() == pytest.approx(out['freq_mask'].mean(), abs=2e-3)

    # Unpaired samples skip the partner.
    out = transform(dict(img=scene.copy()))
    assert 'partner_img_low' not in out


def test_bad_configuration_and_input_fail_clearly(scene):
    with pytest.raises(ValueError, match='ratio_range'):
        RSVHeatFrequencyMasking(ratio_range=(0.3, 0.2))
    with pytest.raises(ValueError, match='ratio_range'):
        RSVHeatFrequencyMasking(ratio_range=(0.0, 0.2))
    with pytest.raises(ValueError, match='ratio_mode'):
        RSVHeatFrequencyMasking(ratio_mode='volume')
    with pytest.raises(KeyError, match="'img'"):
        RSVHeatFrequencyMasking()(dict(img_path='x.png'))
    with pytest.raises(ValueError, match='x.png'):
        RSVHeatFrequencyMasking()(dict(img=scene[None], img_path='x.png'))


def test_pack_stacks_views_and_partner(scene):
    sar = simulate_sar_standin(scene, rng=np.random.default_rng(2))  # (H, W)
    results = dict(img=scene.copy(), partner_img=sar, modality='optical',
                   partner_modality='sar', img_path='a.png', partner_path='b.png')
    results = RSVHeatFrequencyMasking()(results)
    packed = PackRSVHeatPretrainInputs()(results)
    inputs, sample = packed['inputs'], packed['data_samples']
    h, w = scene.shape[:2]
    assert inputs.shape == (3, 3, h, w) and inputs.dtype == torch.float32
    torch.testing.assert_close(inputs[0], torch.from_numpy(scene).permute(2, 0, 1))
    torch.testing.assert_close(inputs[1], torch.from_numpy(results['img_low']).permute(2, 0, 1))
    assert sample.partner_inputs.shape == (3, 1, h, w)
    assert sample.freq_mask.dtype == torch.bool and sample.freq_mask.shape == (h, w)
    assert sample.modality == 'optical' and sample.partner_modality == 'sar'
    assert sample.img_path == 'a.png' and sample.partner_path == 'b.png'
    assert sample.mask_ratio == results['mask_ratio']

    unpaired = RSVHeatFrequencyMasking()(dict(img=scene.copy(), modality='optical'))
    sample = PackRSVHeatPretrainInputs()(unpaired)['data_samples']
    assert 'partner_inputs' not in sample and sample.partner_modality is None

    with pytest.raises(KeyError, match='modality'):
        PackRSVHeatPretrainInputs()(dict(img=scene, img_path='a.png'))
    with pytest.raises(KeyError, match='RSVHeatFrequencyMasking'):
        PackRSVHeatPretrainInputs()(dict(img=scene, modality='optical'))


@pytest.mark.parametrize('mode', ['area', 'radius'])
def test_band_drop_removes_a_ring_from_both_views(scene, mode):
    """drop_range: the ring just outside the sector is in neither view; the
    views are exactly the image's spectrum on their masks."""
    h, w = scene.shape[:2]
    low, high = frequency_band_masks((h, w), 0.25, 0.1, mode)
    dropped = ~(low | high)
    assert not (low & high).any() and dropped.any()
    np.testing.assert_array_equal(low, frequency_sector_mask((h, w), 0.25, mode))
    r = radius(h, w)
    assert r[dropped].min() >= r[low].max() and r[dropped].max() <= r[high].min()
    if mode == 'area':  # exact fractions on the discrete grid
        assert dropped.sum() == round(0.1 * h * w)
    else:
        assert r[high].min() > 0.35 * math.sqrt(2) >= r[dropped].max()
    masking = RSVHeatFrequencyMasking(ratio_range=0.25, ratio_mode=mode, drop_range=0.1)
    out = masking(dict(img=scene.copy()))
    spec = dct(scene)
    for view, mask in ((out['img_low'], low), (out['img_high'], high)):
        np.testing.assert_allclose(dct(view), spec * mask[..., None], atol=2e-2)
    assert out['drop_fraction'] == pytest.approx(dropped.mean())
    np.testing.assert_array_equal(out['freq_high_mask'], high)
    # without drop_range: the paper's exact split
    out = RSVHeatFrequencyMasking(ratio_range=0.25, ratio_mode=mode)(dict(img=scene.copy()))
    assert out['drop_fraction'] == 0
    np.testing.assert_allclose(out['img_low'] + out['img_high'], scene, atol=1e-3)
    with pytest.raises(ValueError, match='drop_range'):
        RSVHeatFrequencyMasking(ratio_range=(0.2, 0.3), drop_range=(0.5, 0.8))
