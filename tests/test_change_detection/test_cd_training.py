"""LEVIR-CD config end to end on fixtures in the real layout; a short training
run on planted changes beats initialisation; huge-pair tiled inference."""
import copy
import os
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from rsvheat_mm.apis.scene import blend_weights
from rsvheat_mm.datasets.planted_changes import (DEFAULT_SPLITS, make_planted_change_dataset,
                                                 plant_changes)
from tests.helpers import DEMO_DATA, ROOT, TINY_ARCH, TINY_DIMS, evaluate, val_metrics

LEVIR = 'configs/change_detection/siam-upernet_rsvheat-b_4xb4-40k_levir-cd-256x256.py'
GENERIC = 'configs/change_detection/siam-upernet_rsvheat-b_4xb4-20k_bitemporal-cd-256x256.py'
DEMO = 'configs/demo/siam-upernet_rsvheat-demo_1xb4-100iter_planted-cd-128x128.py'

# LEVIR-CD layout: {train,val,test}/{A,B,label}/*.png, 0/255 labels (tiles
# cut to 384 x 384 to keep the sliding-window evaluation CPU-cheap).
LEVIR_SPLITS = {
    'train': dict(bases=['loveda/img_dir/0.png', 'scenes/2.png'], objects=['loveda0'],
                  pairs_per_base=1),
    'val': dict(bases=['loveda/img_dir/2.png'], objects=['loveda1'],
                textures=['scenes/7.png'], pairs_per_base=1),
    'test': dict(bases=['loveda/img_dir/1.png'], objects=['potsdam'],
                 textures=['scenes/4.png'], pairs_per_base=1),
}


def _common(cfg, data_root, work_dir):
    cfg.work_dir = str(work_dir)
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[name].num_workers = 0
        cfg[name].persistent_workers = False
        cfg[name].dataset.data_root = str(data_root)
    cfg.env_cfg.dist_cfg = dict(backend='gloo')
    return cfg


def test_levir_config_two_iterations_and_evaluation(tmp_path):
    make_planted_change_dataset(str(tmp_path / 'LEVIR-CD'), LEVIR_SPLITS, seed=0, max_size=384)
    label = mmcv.imread(str(tmp_path / 'LEVIR-CD/val/label/loveda_2_0.png'), 'unchanged')
    assert label.shape == (384, 384) and set(np.unique(label)) == {0, 255}

    cfg = Config.fromfile(osp.join(ROOT, LEVIR))
    # the recipe as it ships
    assert cfg.model.type == 'CDSiameseEncoderDecoder' and cfg.model.backbone.type == 'RSVHeat'
    assert cfg.model.fusion_neck.policy == 'concat' and cfg.model.decode_head.num_classes == 2
    assert cfg.model.test_cfg == dict(mode='slide', crop_size=(256, 256), stride=(128, 128))
    assert cfg.train_dataloader.dataset.data_prefix.img_path2 == 'train/B'
    assert cfg.crop_size == (256, 256) and cfg.val_evaluator.type == 'CDChangeMetric'
    assert cfg.model.backbone.init_cfg.checkpoint == cfg.checkpoint
    # the generic A/B/label config only moves the data
    generic = Config.fromfile(osp.join(ROOT, GENERIC))
    assert generic.test_dataloader.dataset.data_root == 'data/my_cd_dataset'
    assert generic.model == cfg.model
    # the full RS-vHeat-B model composes (fusion widths = UperNet inputs)
    from mmseg.registry import MODELS
    full = copy.deepcopy(cfg.model)
    full.backbone.init_cfg = None
    model = MODELS.build(full).eval()
    with torch.no_grad():
        logits = model.encode_decode(torch.zeros(1, 6, 64, 96), [dict(img_shape=(64, 96))])
    assert logits.shape == (1, 2, 64, 96)
    del model

    # shrunk to a CPU-sized model; data, pipelines, 256 crops and the sliding
    # 256/128 test on the full tiles unchanged
    cfg = _common(cfg, tmp_path / 'LEVIR-CD', tmp_path / 'work')
    m = cfg.model
    m.backbone.arch = TINY_ARCH
    m.backbone.init_cfg = None
    m.fusion_neck.in_channels = m.fusion_neck.out_channels = TINY_DIMS
    m.decode_head.in_channels, m.decode_head.channels = TINY_DIMS, 16
    m.auxiliary_head.in_channels, m.auxiliary_head.channels = TINY_DIMS[2], 8
    cfg.train_dataloader.batch_size = 2
    cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = 2
    cfg.default_hooks.checkpoint.interval = 2
    from rsvheat_mm.engine.launch import build_runner, prepare_config
    runner = build_runner(prepare_config(cfg))
    runner.train()
    metrics = val_metrics(runner)
    assert {'F1', 'precision', 'recall', 'IoU', 'OA', 'kappa', 'mIoU'} <= set(metrics)
    _check_change_evaluator(runner)
    # best-F1 checkpoint of the recipe's CheckpointHook
    assert any(f.startswith('best_F1_iter_2') for f in os.listdir(tmp_path / 'work'))
    # the test split (another tile) through the test loop
    test_metrics = runner.test()
    assert {'F1', 'precision', 'recall', 'IoU'} <= set(test_metrics)


def _check_change_evaluator(runner):
    """The config's evaluator against the oracle, on the validation labels
    (read here as 0/255 PNGs): the label as the prediction scores 100; with
    the change erased from every 4th row, precision stays 100 and recall,
    F1 and IoU are what the erased pixel count gives."""
    from mmengine.structures import PixelData

    ds = runner.val_dataloader.dataset
    perfect, erased, tp, fn = [], [], 0, 0
    for i in range(len(ds)):
        sample = ds[i]['data_samples']
        gt = (mmcv.imread(ds.get_data_info(i)['seg_map_path'], 'unchanged') > 127).astype(np.int64)
        cut = gt.copy()
        cut[::4] = 0
        tp, fn = tp + int(cut.sum()), fn + int(gt.sum() - cut.sum())
        for into, pred in ((perfect, gt), (erased, cut)):
            s = sample.clone()
            s.pred_sem_seg = PixelData(data=torch.from_numpy(pred)[None])
            into.append(s)
    scores = evaluate(runner.val_evaluator, perfect)
    assert all(scores[k] == 100 for k in ('F1', 'precision', 'recall', 'IoU', 'OA')), scores
    scores = evaluate(runner.val_evaluator, erased)
    recall = tp / (tp + fn)
    assert 0.5 < recall < 0.9
    expected = dict(precision=100, recall=100 * recall, IoU=100 * recall,
                    F1=100 * 2 * recall / (1 + recall))
    for k, v in expected.items():
        assert scores[k] == pytest.approx(v, abs=0.006), (k, scores)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """The demo config trained briefly on planted changes; F1 before and after."""
    root = tmp_path_factory.mktemp('cd_demo')
    # the default train/val splits, bases cut to their central 512 x 512
    # (cheaper decoding; validation = 16 windows of 128)
    splits = {k: DEFAULT_SPLITS[k] for k in ('train', 'val')}
    make_planted_change_dataset(str(root / 'data'), splits, seed=0, max_size=512)
    cfg = _common(Config.fromfile(osp.join(ROOT, DEMO)), root / 'data', root / 'work')
    iters = 40
    cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = iters
    cfg.param_scheduler[1].end = iters
    cfg.default_hooks.checkpoint.interval = iters
    runner = Runner.from_cfg(cfg)
    runner.model.init_weights()
    f1_init = runner.val()['F1']
    runner.train()
    ckpt = root / 'work' / f'iter_{iters}.pth'
    assert ckpt.exists()
    return dict(cfg=cfg, f1_init=f1_init, f1=val_metrics(runner)['F1'], ckpt=str(ckpt), root=root)


def test_short_training_on_planted_changes_beats_initialisation(trained):
    print(f"F1 at initialisation {trained['f1_init']:.2f}, after training {trained['f1']:.2f}")
    assert trained['f1'] >= 35
    assert trained['f1'] >= trained['f1_init'] + 25


@pytest.fixture(scope='module')
def huge_pair(tmp_path_factory):
    """A non-square pair cut from the DOTA scene with planted changes, as GeoTIFFs."""
    import rasterio
    from rasterio.transform import from_origin

    from rsvheat_mm.datasets.planted_changes import load_objects, read_rgb
    root = tmp_path_factory.mktemp('huge')
    scene = read_rgb(osp.join(DEMO_DATA, 'dota_scene/dota_demo.jpg'))[300:820, 200:800]
    texture = read_rgb(osp.join(DEMO_DATA, 'loveda/img_dir/2.png'))
    a, b, label, _ = plant_changes(scene, load_objects(['loveda1']), [texture],
                                   np.random.default_rng(3), swap_prob=0.)
    transform = from_origin(500000.0, 4200000.0, 0.5, 0.5)
    for name, img in (('A', a), ('B', b)):
        with rasterio.open(root / f'{name}.tif', 'w', driver='GTiff', height=img.shape[0],
                           width=img.shape[1], count=3, dtype='uint8', crs='EPSG:32650',
                           transform=transform) as dst:
            dst.write(img[..., ::-1].transpose(2, 0, 1))  # RGB in the file
        mmcv.imwrite(img, str(root / f'{name}.png'))
    mmcv.imwrite(label * 255, str(root / 'label.png'))
    # a small non-square piece for the checks that run the model window by window
    for name, img in (('A', a), ('B', b), ('label', label * 255)):
        mmcv.imwrite(img[100:300, 140:400], str(root / f'small_{name}.png'))
    return dict(root=root, a=a, b=b, label=label, transform=transform)


def _model(trained):
    from rsvheat_mm.apis.cd_tiled_inference import init_change_detector
    return init_change_detector(trained['cfg'], trained['ckpt'], device='cpu')


def _fake_predict(model, pipeline, crops, windows, paths, change_index):
    """Stands in for the network: a per-pixel probability that depends on the
    pair *and* on the window, so overlapping windows disagree and the blending
    is visible."""
    out = []
    for crop, (x0, y0, _, _) in zip(crops, windows):
        diff = np.abs(crop[..., :3].astype(np.float32) - crop[..., 3:]).mean(axis=2) / 16
        out.append((1 - np.exp(-diff)) * (0.6 + 0.4 * (((x0 + 2 * y0) // 64) % 3) / 2))
    return out


@pytest.mark.parametrize('blend', ['mean', 'gaussian'])
def test_tiled_blending_strip_by_strip_equals_whole_scene(trained, huge_pair, tmp_path,
                                                         monkeypatch, blend):
    import rasterio

    from rsvheat_mm.apis import cd_tiled_inference as api
    from rsvheat_mm.utils import sliding_windows
    monkeypatch.setattr(api, '_predict_windows', _fake_predict)
    root = huge_pair['root']
    tile, overlap = (96, 160), (40, 24)
    out = api.inference_change_pair_tiled(
        _model(trained), str(root / 'A.tif'), str(root / 'B.tif'), tile=tile, overlap=overlap,
        batch_size=4, blend=blend, out_file=str(tmp_path / 'change.tif'),
        prob_file=str(tmp_path / 'prob.png'))
    windows = sliding_windows(520, 600, tile, overlap)
    assert out['mask'].shape == (520, 600) and out['num_windows'] == len(windows) == 9 * 5
    # reference: accumulate over the whole scene at once
    reader = api.PairReader(str(root / 'A.tif'), str(root / 'B.tif'))
    # GeoTIFF windows come as BGR, like the PNG path and the training loader
    np.testing.assert_array_equal(reader.read((5, 7, 105, 57))[..., 3:],
                                  huge_pair['b'][7:57, 5:105])
    acc, wsum = np.zeros((520, 600)), np.zeros((520, 600))
    for win in windows:
        x0, y0, x1, y1 = win
        prob = _fake_predict(None, None, [reader.read(win)], [win], None, 1)[0]
        weight = blend_weights(y1 - y0, x1 - x0, blend)
        acc[y0:y1, x0:x1] += prob * weight
        wsum[y0:y1, x0:x1] += weight
    reader.close()
    ref = acc / wsum
    assert 0.05 < (ref > 0.5).mean() < 0.95
    np.testing.assert_array_equal(out['mask'], ref > 0.5)
    assert np.abs(out['prob'].astype(np.float64) - np.rint(ref * 255)).max() <= 1
    np.testing.assert_array_equal(mmcv.imread(str(tmp_path / 'prob.png'), 'unchanged'),
                                  out['prob'])
    with rasterio.open(tmp_path / 'change.tif') as src:  # georeferenced like date A
        assert src.crs.to_epsg() == 32650 and src.transform == huge_pair['transform']
        np.testing.assert_array_equal(src.read(1), out['mask'] * 255)
    assert sorted(os.listdir(tmp_path)) == ['change.tif', 'prob.png']  # no temp files left


def test_single_window_equals_the_validation_path(trained, huge_pair):
    """One tile covering the scene = the config's test pipeline + test_step."""
    from mmcv.transforms import Compose
    from mmengine.dataset import pseudo_collate

    from rsvheat_mm.apis.cd_tiled_inference import inference_change_pair_tiled
    model = _model(trained)
    root = huge_pair['root']
    out = inference_change_pair_tiled(model, str(root / 'small_A.png'),
                                      str(root / 'small_B.png'), tile=1024, overlap=0)
    assert out['num_windows'] == 1 and out['mask'].shape == (200, 260)
    pipeline = [t for t in trained['cfg'].test_dataloader.dataset.pipeline
                if t['type'] != 'LoadBitemporalChangeLabel']
    item = Compose(pipeline)(dict(img_path=str(root / 'small_A.png'),
                                  img_path2=str(root / 'small_B.png'), seg_fields=[]))
    with torch.no_grad():
        pred = model.test_step(pseudo_collate([item]))[0].pred_sem_seg.data[0].numpy()
    np.testing.assert_array_equal(out['mask'], pred)


def test_huge_pair_tool_scores_the_mask(trained, huge_pair, tmp_path, capsys):
    from tools import cd_huge_pair
    root = huge_pair['root']
    cfg_file = str(tmp_path / 'cfg.py')
    trained['cfg'].dump(cfg_file)
    result = cd_huge_pair.main([cfg_file, trained['ckpt'], str(root / 'small_A.png'),
                                str(root / 'small_B.png'), '--out', str(tmp_path / 'm.png'),
                                '--tile', '128', '160', '--overlap', '32', '--batch-size', '2',
                                '--label', str(root / 'small_label.png'), '--device', 'cpu'])
    printed = capsys.readouterr().out
    assert 'm.png: 260x200, 4 windows' in printed
    np.testing.assert_array_equal(mmcv.imread(str(tmp_path / 'm.png'), 'unchanged'),
                                  result['mask'] * 255)
    # the printed score is that of the written mask against the label
    from rsvheat_mm.evaluation.cd_metric import change_scores
    pred, gt = result['mask'] > 0, huge_pair['label'][100:300, 140:400] > 0
    tp, fp, fn = (pred & gt).sum(), (pred & ~gt).sum(), (~pred & gt).sum()
    f1 = change_scores(tp, fp, fn, pred.size - tp - fp - fn)['F1']
    assert f'F1 {100 * f1:.2f},' in printed
    with pytest.raises(ValueError, match=r'A\.png .*\(520, 600, 3\).*small\.png'):
        mmcv.imwrite(huge_pair['b'][:100], str(tmp_path / 'small.png'))
        cd_huge_pair.main([cfg_file, trained['ckpt'], str(root / 'A.png'),
                           str(tmp_path / 'small.png'), '--out', str(tmp_path / 'x.png')])
