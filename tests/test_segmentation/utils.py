"""Shrinking the full segmentation configs for 2-iteration CPU runs, and the
evaluator oracle of their metrics."""
import copy

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from tests.helpers import (ROOT, TINY_ARCH, TINY_DIMS, evaluate, segmentation_scores,
                           val_metrics)


def load(config):
    return Config.fromfile(f'{ROOT}/{config}')


def _walk_pipeline(pipeline, crop):
    for t in pipeline:
        if t['type'] in ('RandomResize', 'Resize'):
            t['scale'] = crop
        elif t['type'] == 'RandomCrop':
            t['crop_size'] = crop


def shrink(cfg, data_root, work_dir, crop=(128, 128), max_iters=2):
    """Tiny RSVHeat, ``crop``-sized training/testing, ``max_iters`` iterations."""
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = str(work_dir)
    model = cfg.model
    model.backbone.arch = TINY_ARCH
    model.backbone.init_cfg = None
    model.backbone.drop_path_rate = 0.
    if model.get('neck') is not None:
        model.neck.in_channels = TINY_DIMS
    model.decode_head.in_channels = TINY_DIMS
    model.decode_head.channels = 16
    model.auxiliary_head.in_channels = TINY_DIMS[2]
    model.auxiliary_head.channels = 8
    model.data_preprocessor.size = crop
    if model.test_cfg.get('mode') == 'slide':
        model.test_cfg.crop_size = crop
        model.test_cfg.stride = crop  # still tiled, but fewer windows
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[name]
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.dataset.data_root = str(data_root)
        _walk_pipeline(loader.dataset.pipeline, crop)
    cfg.train_dataloader.batch_size = 2
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = max_iters  # IterBasedTrainLoop validates at the end
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 10**6
    cfg.default_hooks.checkpoint.save_last = False
    cfg.env_cfg.dist_cfg = dict(backend='gloo')
    return cfg


def train_and_validate(cfg):
    """Train (validating at the end); returns ``(runner, validation metrics)``."""
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = val_metrics(runner)
    assert metrics, 'no validation ran'
    return runner, metrics


def read_label(info):
    """The label map of a dataset item read without the dataset's pipeline
    (Pillow: palette indices or grey values), with mmseg's
    ``reduce_zero_label`` (0 and 255 -> 255, others - 1) and ``label_map``."""
    from PIL import Image
    gt = np.array(Image.open(info['seg_map_path'])).astype(np.int64)
    assert gt.ndim == 2, f'{info["seg_map_path"]}: expected one band, got {gt.shape}'
    if info.get('reduce_zero_label'):
        gt = np.where((gt == 0) | (gt == 255), 255, gt - 1)
    if info.get('label_map'):
        mapped = gt.copy()
        for old, new in info['label_map'].items():
            mapped[gt == old] = new
        gt = mapped
    return gt


def check_seg_evaluator(runner, exclude=()):
    """The config's validation evaluator against an oracle, on the validation
    set's labels: the ground truth fed as the prediction scores 100, and every
    4th row shifted to the next class scores what a confusion matrix gives
    (:func:`tests.helpers.segmentation_scores`). Returns the corrupted scores."""
    from mmengine.structures import PixelData
    ds = runner.val_dataloader.dataset
    classes = list(ds.metainfo['classes'])
    num = len(classes)
    perfect, corrupt, gts, wrongs = [], [], [], []
    for i in range(len(ds)):
        sample = ds[i]['data_samples']
        gt = read_label(ds.get_data_info(i))
        assert tuple(sample.gt_sem_seg.data.shape[-2:]) == gt.shape, 'label resized'
        wrong = gt.copy()
        wrong[::4] = (gt[::4] + 1) % num
        wrong[gt == 255] = 0  # ignored pixels: any prediction
        for into, pred in ((perfect, gt), (corrupt, wrong)):
            s = sample.clone()
            s.pred_sem_seg = PixelData(data=torch.from_numpy(pred)[None])
            into.append(s)
        gts.append(gt)
        wrongs.append(wrong)
    scores = evaluate(runner.val_evaluator, perfect)
    keys = [k for k in ('mIoU', 'mF1', 'OA') if k in scores]
    assert keys and all(scores[k] == 100 for k in keys), scores
    scores = evaluate(runner.val_evaluator, corrupt)
    expected = segmentation_scores(wrongs, gts, num, exclude=[classes.index(c) for c in exclude])
    for k in keys:
        assert scores[k] == pytest.approx(expected[k], abs=0.006), (k, scores, expected)
    assert expected['mIoU'] < 95
    return scores
