"""Shrinking the full segmentation configs for 2-iteration CPU runs."""
import copy

from mmengine.config import Config
from mmengine.runner import Runner

from tests.helpers import ROOT

TINY_ARCH = dict(depths=[1, 1, 1, 1], embed_dims=16)
TINY_DIMS = [16, 32, 64, 128]


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
    metrics = {k[len('val/'):]: v.current()
               for k, v in runner.message_hub.log_scalars.items() if k.startswith('val/')}
    assert metrics, 'no validation ran'
    return runner, metrics
