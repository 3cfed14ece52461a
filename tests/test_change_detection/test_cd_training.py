"""LEVIR-CD config end to end on fixtures in the real layout; a short training
run on planted changes beats initialisation (huge-pair tiled inference:
test_cd_tiled_inference.py)."""
import copy
import os
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from rsvheat_mm.datasets.planted_changes import DEFAULT_SPLITS, make_planted_change_dataset
from tests.helpers import ROOT, TINY_ARCH, TINY_DIMS, evaluate, val_metrics

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
    # 60 iterations: at 40 the F1 sat on the knee of the learning curve and
    # depended on the stack/CPU (Zen 3: official 74, OneDL 30); at 60 both
    # reach 75-78 (initialisation: 4)
    iters = 60
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
