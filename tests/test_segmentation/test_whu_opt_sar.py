"""WHU-OPT-SAR: tiling tool, pair dataset/loader, optical+SAR fusion model."""
import os
import os.path as osp

import numpy as np
import pytest
import tifffile
import torch

from tests.test_segmentation import fixtures
from tests.test_segmentation.utils import (check_seg_evaluator, load, shrink,
                                           train_and_validate)

CONFIG = 'configs/segmentation/upernet_rsvheat-b_fusion_8xb4-40k_whu-opt-sar-256x256.py'


@pytest.fixture(scope='module')
def whu_root(tmp_path_factory):
    from tools.dataset_converters import whu_opt_sar
    tmp = tmp_path_factory.mktemp('whu')
    raw = fixtures.make_whu_opt_sar_raw(tmp)
    out = tmp / 'whu-opt-sar'
    counts = whu_opt_sar.main([raw, '-o', str(out), '--tile', '256', '--stride', '256'])
    return out, counts


def test_tiling_tool(whu_root, tmp_path):
    out, counts = whu_root
    # two 512 px scenes -> 8 tiles of 256, split 6:2:2 over tiles
    assert counts == dict(train=5, val=1, test=2)
    names = {split: sorted(os.listdir(out / 'img_dir' / split)) for split in counts}
    for split, files in names.items():
        assert len(files) == counts[split]
        assert sorted(os.listdir(out / 'sar_dir' / split)) == files
        assert sorted(f[:-4] + '.tif' for f in os.listdir(out / 'ann_dir' / split)) == files
    tile = names['train'][0]
    opt = tifffile.imread(out / 'img_dir' / 'train' / tile)
    sar = tifffile.imread(out / 'sar_dir' / 'train' / tile)
    assert opt.shape == (256, 256, 4) and sar.shape == (256, 256)
    # the tile is the scene's window named in the file name
    scene, y, x = tile[:-4].rsplit('_', 2)
    raw = osp.join(osp.dirname(out), 'WHU-OPT-SAR')
    full = tifffile.imread(osp.join(raw, 'optical', scene + '.tif'))
    np.testing.assert_array_equal(opt, full[int(y):int(y) + 256, int(x):int(x) + 256])
    import cv2
    lab = cv2.imread(str(out / 'ann_dir' / 'train' / (tile[:-4] + '.png')), 0)
    raw_lab = tifffile.imread(osp.join(raw, 'lbl', scene + '.tif'))
    np.testing.assert_array_equal(lab, raw_lab[int(y):int(y) + 256, int(x):int(x) + 256] // 10)

    # scene-level split keeps every scene's tiles together
    from tools.dataset_converters import whu_opt_sar
    out2 = tmp_path / 'by_scene'
    whu_opt_sar.main([raw, '-o', str(out2), '--split-by', 'scene', '--ratios', '1', '0', '1'])
    scenes = {s: {f.rsplit('_', 2)[0] for f in os.listdir(out2 / 'img_dir' / s)}
              for s in os.listdir(out2 / 'img_dir')}
    assert sorted(len(v) for v in scenes.values()) == [1, 1]
    assert not set.intersection(*scenes.values())


def test_tiling_tool_rejects_bad_input(whu_root, tmp_path):
    from tools.dataset_converters import whu_opt_sar
    raw = fixtures.make_whu_opt_sar_raw(tmp_path)
    lbl = osp.join(raw, 'lbl', 'NH49E001013.tif')
    bad = tifffile.imread(lbl)
    bad[0, 0] = 15
    tifffile.imwrite(lbl, bad)
    with pytest.raises(ValueError, match=r'NH49E001013\.tif.*\[15\]'):
        whu_opt_sar.main([raw, '-o', str(tmp_path / 'out')])
    os.remove(osp.join(raw, 'sar', 'NH49E009013.tif'))
    with pytest.raises(FileNotFoundError, match='NH49E009013'):
        whu_opt_sar.main([raw, '-o', str(tmp_path / 'out')])


def test_pair_loader_and_dataset(whu_root):
    from mmengine.registry import init_default_scope

    from rsvheat_mm.datasets.transforms import LoadOpticalSARPair
    from rsvheat_mm.datasets.whu_opt_sar import WHUOPTSARDataset
    init_default_scope('mmseg')
    out, counts = whu_root
    ds = WHUOPTSARDataset(
        data_root=str(out), pipeline=[],
        data_prefix=dict(img_path='img_dir/val', sar_path='sar_dir/val',
                         seg_map_path='ann_dir/val'))
    assert len(ds) == counts['val'] and ds.metainfo['classes'][0] == 'farmland'
    info = ds[0]
    assert info['sar_path'].endswith(osp.basename(info['img_path']))
    res = LoadOpticalSARPair(optical_bands=(0, 1, 2))(dict(info))
    img = res['img']
    assert img.shape == (256, 256, 4) and res['img_shape'] == (256, 256)
    np.testing.assert_array_equal(img[..., :3], tifffile.imread(info['img_path'])[..., :3])
    np.testing.assert_array_equal(img[..., 3], tifffile.imread(info['sar_path']))
    # band selection errors name the file
    with pytest.raises(IndexError, match=osp.basename(info['img_path'])):
        LoadOpticalSARPair(optical_bands=(0, 5))(dict(info))


def test_read_bands_layouts_and_missing_sar(whu_root, tmp_path):
    from mmengine.registry import init_default_scope

    from rsvheat_mm.datasets.transforms import read_bands
    from rsvheat_mm.datasets.whu_opt_sar import WHUOPTSARDataset
    arr = np.arange(4 * 6 * 5, dtype=np.uint16).reshape(6, 5, 4)
    # pixel- and band-interleaved GeoTIFFs read alike, as (H, W, bands)
    tifffile.imwrite(tmp_path / 'contig.tif', arr, photometric='minisblack',
                     planarconfig='contig')
    tifffile.imwrite(tmp_path / 'planar.tif', np.moveaxis(arr, -1, 0),
                     photometric='minisblack', planarconfig='separate')
    for name in ('contig.tif', 'planar.tif'):
        np.testing.assert_array_equal(read_bands(str(tmp_path / name)), arr)
    # PNG/JPEG: first band first (OpenCV's BGR undone)
    import cv2
    rgb = arr[..., :3].astype(np.uint8)
    cv2.imwrite(str(tmp_path / 'rgb.png'), rgb[..., ::-1])
    np.testing.assert_array_equal(read_bands(str(tmp_path / 'rgb.png')), rgb)

    init_default_scope('mmseg')
    out, _ = whu_root
    sar_dir = tmp_path / 'sar'
    os.makedirs(sar_dir)
    with pytest.raises(FileNotFoundError, match='no SAR tile .* for the optical tile'):
        WHUOPTSARDataset(data_root=str(out), pipeline=[],
                         data_prefix=dict(img_path='img_dir/val', sar_path=str(sar_dir),
                                          seg_map_path='ann_dir/val'))


def test_fusion_config_trains_and_reports_oa(whu_root, tmp_path):
    out, _ = whu_root
    cfg = load(CONFIG)
    assert cfg.model.type == 'RSVHeatMultiModalEncoderDecoder'
    assert cfg.model.test_cfg.mode == 'slide' and cfg.crop_size == (256, 256)
    cfg = shrink(cfg, out, tmp_path / 'work', crop=(128, 128))
    runner, metrics = train_and_validate(cfg)
    assert {'OA', 'aAcc', 'mIoU'} <= set(metrics)
    assert metrics['OA'] == metrics['aAcc']
    check_seg_evaluator(runner)  # OA (the paper's metric) against the oracle
    # layer-wise decay from the config reached the optimizer
    groups = runner.optim_wrapper.optimizer.param_groups
    stem_lr = {g['lr'] for g in groups if g['layer_id'] == 0}
    head_lr = {g['lr'] for g in groups if g['layer_id'] == 5}
    assert len(stem_lr) == 1 and len(head_lr) == 1
    assert stem_lr.pop() == pytest.approx(head_lr.pop() * 0.9**5)


def test_fusion_uses_both_inputs_and_trains():
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('mmseg')
    cfg = load(CONFIG)
    cfg = shrink(cfg, '.', '.', crop=(64, 64))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.eval()
    x = torch.randn(2, 4, 64, 64)
    with torch.no_grad():
        base = model._forward(x)
        sar_changed = x.clone()
        sar_changed[:, 3] = torch.randn(2, 64, 64)
        opt_changed = x.clone()
        opt_changed[:, :3] = torch.randn(2, 3, 64, 64)
        out_sar = model._forward(sar_changed)
        out_opt = model._forward(opt_changed)
    assert base.shape == (2, 7, 16, 16)
    assert not torch.allclose(base, out_sar) and not torch.allclose(base, out_opt)
    # the SAR input reaches the output through the SAR stem only
    feats = model.extract_modality_feats(x)
    with model.backbone.use_modality('sar'):
        ref = model.backbone(x[:, 3:])
    for a, b in zip(feats[1], ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match='expected 4 \\(optical 3 \\+ sar 1\\)'):
        model.extract_feat(x[:, :3])

    # one optimisation step moves both stems and the fusion neck
    model.train()
    from mmseg.structures import SegDataSample
    from mmengine.structures import PixelData
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(64, 64), pad_shape=(64, 64)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 7, (1, 64, 64)))
        samples.append(s)
    losses = model.loss(x, samples)
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    loss.backward()
    for name in ('backbone.stems.optical.conv1.weight', 'backbone.stems.sar.conv1.weight',
                 'neck.fuse.0.conv.weight'):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
