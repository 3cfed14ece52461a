"""Pretraining datasets, loading and batching on real bundled images written
to disk in their real formats (optical PNG, one-band SAR stand-ins as PNG and
TIFF), including the paper config's paired pipeline and mixed batches."""
import os
import os.path as osp

import cv2
import mmcv
import mmengine
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import ConcatDataset, default_collate, pseudo_collate
from mmengine.registry import init_default_scope
from scipy import fft as sp_fft

from rsvheat_mm.datasets.pretrain_datasets import (LoadRSVHeatPretrainImages,
                                                   RSVHeatImageFolderDataset,
                                                   RSVHeatPairedDataset, RSVHeatSARStandIn,
                                                   simulate_sar_standin)
from tests.helpers import ROOT

PAPER_CONFIG = osp.join(ROOT, 'configs/pretrain/'
                        'rsvheat-pretrain_rsvheat-b_8xb64-amp-coslr-200e_opt-sar-224px.py')
GRAY = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory, demo_data):
    """pairs/optical/{a,b,c}.png with pairs/sar/{a,b}.png + c.tif (stand-ins),
    optical/x/{d,e}.PNG (nested, upper-case extension), sar_only/f.png, and
    coreg/{optical,sar}: a pair whose SAR is the exact grey level of the
    optical image (to check that augmentation keeps pairs co-registered)."""
    root = tmp_path_factory.mktemp('pretrain_data')
    rng = np.random.default_rng(0)
    scenes = [mmcv.imread(osp.join(demo_data, 'scenes', f'{i}.png'), channel_order='rgb')
              for i in range(1, 7)]
    crops = [s[50:210, 100:300] for s in scenes]  # 160 x 200
    for name, crop in zip('abc', crops[:3]):
        mmcv.imwrite(crop[..., ::-1], str(root / 'pairs/optical' / f'{name}.png'))
        sar = simulate_sar_standin(crop, rng=rng).round().astype(np.uint8)
        ext = '.tif' if name == 'c' else '.png'
        mmcv.imwrite(sar, str(root / 'pairs/sar' / f'{name}{ext}'))
    for name, crop in zip('de', crops[3:5]):
        mmcv.imwrite(crop[..., ::-1], str(root / 'optical/x' / f'{name}.PNG'))
    sar = simulate_sar_standin(crops[5], rng=rng).round().astype(np.uint8)
    mmcv.imwrite(sar, str(root / 'sar_only/f.png'))
    big = scenes[0][:400, :300]
    mmcv.imwrite(big[..., ::-1], str(root / 'coreg/optical/g.png'))
    mmcv.imwrite((big.astype(np.float32) @ GRAY).round().astype(np.uint8),
                 str(root / 'coreg/sar/g.png'))
    return root


def test_paired_dataset_matches_folders_by_name(data_dir):
    ds = RSVHeatPairedDataset(data_root=str(data_dir / 'pairs'))
    assert len(ds) == 3
    items = [ds.get_data_info(i) for i in range(3)]
    assert [osp.basename(i['img_path']) for i in items] == ['a.png', 'b.png', 'c.png']
    assert [osp.basename(i['partner_path']) for i in items] == ['a.png', 'b.png', 'c.tif']
    assert all(i['modality'] == 'optical' and i['partner_modality'] == 'sar' for i in items)
    assert osp.isfile(items[2]['partner_path'])


def test_paired_dataset_annotation_files(data_dir, tmp_path):
    txt = tmp_path / 'pairs.txt'
    txt.write_text('# optical  sar\na.png a.png\n\nc.png "c.tif"\nb.png\n')
    ds = RSVHeatPairedDataset(data_root=str(data_dir / 'pairs'), ann_file=str(txt))
    items = [ds.get_data_info(i) for i in range(len(ds))]
    assert [osp.basename(i['img_path']) for i in items] == ['a.png', 'c.png', 'b.png']
    assert osp.basename(items[1]['partner_path']) == 'c.tif'
    # A line with one path is an unpaired sample.
    assert items[2]['partner_path'] is None and items[2]['partner_modality'] is None

    bad = tmp_path / 'bad.txt'
    bad.write_text('a.png a.png\na.png b.png c.png\n')
    with pytest.raises(ValueError, match=r'bad\.txt:2'):
        RSVHeatPairedDataset(data_root=str(data_dir / 'pairs'), ann_file=str(bad))

    # mmengine's annotation format, with a per-item modality override.
    ann = dict(metainfo=dict(), data_list=[
        dict(img_path='a.png', partner_path='a.png'),
        dict(img_path='b.png', partner_path='b.png', partner_modality='sar_vv')])
    mmengine.dump(ann, str(tmp_path / 'pairs.json'))
    ds = RSVHeatPairedDataset(data_root=str(data_dir / 'pairs'),
                              ann_file=str(tmp_path / 'pairs.json'))
    assert ds.get_data_info(0)['partner_path'] == osp.join(str(data_dir / 'pairs/sar'), 'a.png')
    assert ds.get_data_info(1)['partner_modality'] == 'sar_vv'
    mmengine.dump(dict(metainfo=dict(), data_list=[dict(partner_path='a.png')]),
                  str(tmp_path / 'noimg.json'))
    with pytest.raises(KeyError, match='img_path'):
        RSVHeatPairedDataset(data_root=str(data_dir / 'pairs'),
                             ann_file=str(tmp_path / 'noimg.json'))


def test_paired_dataset_unmatched_files(data_dir):
    # optical/x has d and e, sar_only has f: nothing matches.
    kwargs = dict(data_root=str(data_dir), data_prefix=dict(img_path='optical',
                                                            partner_path='sar_only'))
    with pytest.raises(ValueError, match=r"x/d\.PNG.*allow_unpaired"):
        RSVHeatPairedDataset(**kwargs)
    ds = RSVHeatPairedDataset(allow_unpaired=True, **kwargs)
    assert len(ds) == 2 and all(ds.get_data_info(i)['partner_path'] is None for i in range(2))
    with pytest.raises(KeyError, match='partner_path'):
        RSVHeatPairedDataset(data_root=str(data_dir), data_prefix=dict(img_path='optical'))


def test_image_folder_dataset(data_dir, tmp_path):
    ds = RSVHeatImageFolderDataset(data_root=str(data_dir / 'optical'))
    assert [osp.relpath(ds.get_data_info(i)['img_path'], str(data_dir / 'optical'))
            for i in range(len(ds))] == ['x/d.PNG', 'x/e.PNG']
    ds = RSVHeatImageFolderDataset(data_root=str(data_dir / 'sar_only'), modality='sar')
    assert ds.get_data_info(0)['modality'] == 'sar'
    (tmp_path / 'list.txt').write_text('x/e.PNG\n')
    ds = RSVHeatImageFolderDataset(data_root=str(data_dir / 'optical'),
                                   ann_file=str(tmp_path / 'list.txt'))
    assert len(ds) == 1 and ds.get_data_info(0)['img_path'].endswith('x/e.PNG')
    os.makedirs(tmp_path / 'empty')
    with pytest.raises(FileNotFoundError, match='empty'):
        RSVHeatImageFolderDataset(data_root=str(tmp_path / 'empty'))


def test_loader_decodes_per_modality(data_dir, demo_data):
    ds = RSVHeatPairedDataset(data_root=str(data_dir / 'pairs'))
    info = ds.get_data_info(2)
    out = LoadRSVHeatPretrainImages()(dict(info))
    expected = mmcv.imread(info['img_path'], channel_order='rgb')
    np.testing.assert_array_equal(out['img'], expected)
    assert out['img'].dtype == np.float32 and out['img_shape'] == (160, 200)
    sar = cv2.imread(info['partner_path'], cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(out['partner_img'][..., 0], sar)  # the .tif partner

    # RGBA scene: alpha dropped for the optical stem.
    rgba = LoadRSVHeatPretrainImages()(dict(img_path=osp.join(demo_data, 'scenes', '1.png'),
                                            modality='optical'))
    assert rgba['img'].shape == (700, 700, 3)
    # A multispectral TIFF through tifffile (unlisted modality: 'unchanged').
    ms = LoadRSVHeatPretrainImages(imdecode_backend=dict(ms='tifffile'))(dict(
        img_path=osp.join(demo_data, 'multispectral', 'uint16-5channel.tif'), modality='ms'))
    assert ms['img'].shape == (200, 150, 5) and ms['img'].max() > 255

    # Pairs must share their grid, unless resampling is asked for.
    mismatched = dict(img_path=info['img_path'], modality='optical', partner_modality='sar',
                      partner_path=osp.join(demo_data, 'scenes', '2.png'))
    with pytest.raises(ValueError, match='resize_partner'):
        LoadRSVHeatPretrainImages()(dict(mismatched))
    out = LoadRSVHeatPretrainImages(resize_partner=True)(dict(mismatched))
    assert out['partner_img'].shape == (160, 200, 1)
    with pytest.raises(FileNotFoundError, match='nothere.png'):
        LoadRSVHeatPretrainImages()(dict(img_path=str(data_dir / 'nothere.png'),
                                         modality='optical'))


def test_paper_pipeline_keeps_pairs_coregistered(data_dir):
    """The paired pipeline of configs/pretrain: random scale, crop and flips
    shared by both images of a pair, then one frequency mask for both."""
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(PAPER_CONFIG)
    ds = RSVHeatPairedDataset(data_root=str(data_dir / 'coreg'), pipeline=cfg.paired_pipeline)
    np.random.seed(0)
    crops = set()
    for _ in range(6):
        packed = ds[0]
        img, sample = packed['inputs'], packed['data_samples']
        assert img.shape == (3, 3, 224, 224)
        partner = sample.partner_inputs
        assert partner.shape == (3, 1, 224, 224)
        grey = torch.einsum('chw,c->hw', img[0], torch.from_numpy(GRAY))
        # Same crop, scale and flip: the SAR is still the grey level (up to
        # the 8-bit rounding of the file and the resampling).
        assert (grey - partner[0, 0]).abs().mean() < 1.0
        crops.add(img[0].numpy().tobytes())
        # One sector for both: the partner's low view has no energy outside it.
        spec = torch.from_numpy(sp_fft.dctn(partner[1, 0].double().numpy(), norm='ortho'))
        outside = spec[~sample.freq_mask].abs().max()
        assert outside < 1e-4 * spec.abs().max()
        assert 0.2 <= sample.mask_fraction <= 0.3
    assert len(crops) == 6  # the augmentation is random


def test_mixed_batch_preprocessing(data_dir):
    """Paired optical+SAR, optical-only and SAR-only samples in one batch."""
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(PAPER_CONFIG)
    crop = 64
    geometric = [dict(type='RandomCrop', crop_size=crop)]
    tail = [dict(type='RSVHeatFrequencyMasking'), dict(type='PackRSVHeatPretrainInputs')]
    load = dict(type='LoadRSVHeatPretrainImages')
    paired = RSVHeatPairedDataset(
        data_root=str(data_dir / 'pairs'),
        pipeline=[load, dict(type='TransformBroadcaster', mapping=dict(img=['img', 'partner_img']),
                             auto_remap=True, share_random_params=True, transforms=geometric),
                  *tail])
    optical = RSVHeatImageFolderDataset(data_root=str(data_dir / 'optical'),
                                        pipeline=[load, *geometric, *tail])
    sar = RSVHeatImageFolderDataset(data_root=str(data_dir / 'sar_only'), modality='sar',
                                    pipeline=[load, *geometric, *tail])
    dataset = ConcatDataset([paired, optical, sar])
    np.random.seed(1)
    batch = pseudo_collate([dataset[0], dataset[3], dataset[5], dataset[1]])
    raw = [x.clone() for x in batch['inputs']]

    from mmpretrain.registry import MODELS
    pre = MODELS.build(cfg.data_preprocessor)
    out = pre(batch, training=True)
    img, low, high = out['inputs']
    samples = out['data_samples']
    assert img.shape == low.shape == high.shape == (4, 3, crop, crop)
    assert [s.modality for s in samples] == ['optical', 'optical', 'sar', 'optical']
    assert [('partner_inputs' in s) for s in samples] == [True, False, False, True]

    mean = torch.tensor(cfg.data_preprocessor['mean']['optical']).view(3, 1, 1)
    std = torch.tensor(cfg.data_preprocessor['std']['optical']).view(3, 1, 1)
    torch.testing.assert_close(img[1], (raw[1][0] - mean) / std)
    torch.testing.assert_close(low[1], (raw[1][1] - mean) / std)
    torch.testing.assert_close(high[1], raw[1][2] / std)
    # Normalising the views == splitting the normalised image.
    torch.testing.assert_close(low + high, img, atol=1e-4, rtol=0)
    # The one-band SAR sample: its statistics, zero padding in bands 1-2.
    torch.testing.assert_close(img[2, 0], (raw[2][0, 0] - 100.0) / 50.0)
    assert img[2, 1:].abs().max() == 0 and high[2, 1:].abs().max() == 0
    partner = samples[0].partner_inputs
    assert partner.shape == (3, 1, crop, crop)
    torch.testing.assert_close(partner[1] + partner[2], partner[0], atol=1e-4, rtol=0)

    # default_collate (one band count, stacked by the dataloader) works too.
    stacked = default_collate([optical[0], optical[1]])
    assert stacked['inputs'].shape == (2, 3, 3, crop, crop)
    img2, low2, high2 = pre(stacked)['inputs']
    torch.testing.assert_close(img2[0], (stacked['inputs'][0, 0] - mean) / std)
    torch.testing.assert_close(high2[1], stacked['inputs'][1, 2] / std)

    with pytest.raises(KeyError, match="'ms'"):
        batch = pseudo_collate([dataset[5]])
        batch['data_samples'][0].set_metainfo(dict(modality='ms'))
        pre(batch)


def test_sar_standin_is_documented_stand_in(demo_data):
    scene = mmcv.imread(osp.join(demo_data, 'scenes', '5.png'), channel_order='rgb')[:128, :128]
    a = simulate_sar_standin(scene, rng=np.random.default_rng(0))
    b = simulate_sar_standin(scene, rng=np.random.default_rng(1))
    assert a.shape == (128, 128) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 255
    assert not np.array_equal(a, b)  # speckle
    grey = scene.astype(np.float32) @ GRAY
    assert np.corrcoef(a.ravel(), grey.ravel())[0, 1] > 0.3  # follows the scene
    out = RSVHeatSARStandIn(prob=1.0)(dict(img=scene.astype(np.float32)))
    assert out['partner_img'].shape == (128, 128, 1) and out['partner_modality'] == 'sar'
    out = RSVHeatSARStandIn(prob=0.0)(dict(img=scene.astype(np.float32)))
    assert 'partner_img' not in out
