"""The AID / NWPU-RESISC45 fine-tuning configs: parse, build, two training
iterations (Mixup/CutMix, label smoothing, layer-wise lr decay, EMA) and an
evaluation reporting OA (= top-1 accuracy) on AID/NWPU-format fixtures."""
import copy
import re

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from tests.helpers import ROOT, TINY_ARCH, TINY_DIMS, evaluate
from tests.test_classification.fixtures import make_scene_dataset
from tools.dataset_converters import scene_cls_split

CONFIGS = {
    'rsvheat-b_8xb32-100e_aid-20p-224px.py': ('aid', 'AID', 30),
    'rsvheat-b_8xb32-100e_aid-50p-224px.py': ('aid', 'AID', 30),
    'rsvheat-b_8xb32-100e_nwpu45-10p-224px.py': ('nwpu', 'NWPU-RESISC45', 45),
    'rsvheat-b_8xb32-100e_nwpu45-20p-224px.py': ('nwpu', 'NWPU-RESISC45', 45),
}


@pytest.fixture(scope='module')
def datasets(tmp_path_factory):
    roots = {}
    for style, folder in (('aid', 'AID'), ('nwpu', 'NWPU-RESISC45')):
        data_root = tmp_path_factory.mktemp(style)
        make_scene_dataset(data_root / folder, style)
        roots[style] = data_root
    return roots


def shrink(cfg, data_root, work_dir, num_classes=3):
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = str(work_dir)
    cfg.model.backbone.arch = TINY_ARCH
    cfg.model.backbone.init_cfg = None
    cfg.model.head.in_channels = TINY_DIMS[-1]
    cfg.model.head.num_classes = num_classes
    cfg.data_preprocessor.num_classes = num_classes
    for name, count in (('train_dataloader', 4), ('val_dataloader', 6)):
        loader = cfg[name]
        loader.batch_size = 2
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.dataset.data_root = str(data_root)
        loader.dataset.classes = f'{data_root}/splits/classes.txt'
        loader.dataset.indices = count  # 4 images = 2 iterations
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=1)
    cfg.default_hooks.logger.interval = 1
    cfg.env_cfg.dist_cfg = dict(backend='gloo')
    return cfg


def test_demo_config_on_bundled_scenes():
    # The demo stage itself trains it (tools/train.py); here: its data and model.
    from mmengine.registry import DATASETS, MODELS, init_default_scope
    cfg = Config.fromfile(f'{ROOT}/configs/demo/rsvheat-demo_1xb4-24iter_scenes-cls-224px.py')
    init_default_scope(cfg.default_scope)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert len(dataset) == 7 and dataset.metainfo['classes'][0] == 'airport'
    assert [int(dataset.get_data_info(i)['gt_label']) for i in range(7)] == [0, 0, 0, 1, 1, 2, 3]
    sample = dataset[0]
    assert tuple(sample['inputs'].shape) == (3, 224, 224)
    model = MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    data = model.data_preprocessor(dict(inputs=[sample['inputs']] * 2,
                                        data_samples=[sample['data_samples']] * 2), True)
    losses = model(**data, mode='loss')
    assert losses['loss'].isfinite()


def check_accuracy_evaluator(runner):
    """The config's evaluator against the oracle: each image's class read off
    its folder name, fed as the prediction, gives OA 100; two wrong
    predictions give 100 * (n - 2) / n."""
    import os.path as osp

    import torch
    ds = runner.val_dataloader.dataset
    classes = [c.lower() for c in ds.metainfo['classes']]
    samples = []
    for i in range(len(ds)):
        folder = osp.basename(osp.dirname(ds.get_data_info(i)['img_path'])).lower()
        samples.append((ds[i]['data_samples'], classes.index(folder)))

    def score(wrong):
        out = []
        for k, (sample, label) in enumerate(samples):
            s = sample.clone()
            pred = (label + 1) % len(classes) if k < wrong else label
            s.set_pred_score(torch.eye(len(classes))[pred])
            out.append(s)
        return evaluate(runner.val_evaluator, out)['accuracy/top1']

    n = len(samples)
    assert n >= 4
    assert score(0) == pytest.approx(100)
    assert score(2) == pytest.approx(100 * (n - 2) / n)


@pytest.mark.parametrize('config', sorted(CONFIGS))
def test_config_trains_and_reports_oa(config, datasets, tmp_path):
    style, folder, paper_classes = CONFIGS[config]
    cfg = Config.fromfile(f'{ROOT}/configs/classification/{config}')
    assert cfg.model.head.num_classes == cfg.data_preprocessor.num_classes == paper_classes
    assert cfg.train_dataloader.dataset.data_prefix == folder
    ratio = int(re.search(r'-(\d+)p-', config).group(1)) / 100
    ann = cfg.train_dataloader.dataset.ann_file
    assert ann == f'splits/train_{scene_cls_split.split_name(ratio, 0)}.txt'
    # the recipe's options are on
    assert [a['type'] for a in cfg.model.train_cfg.augments] == ['Mixup', 'CutMix']
    assert cfg.model.head.loss.type == 'LabelSmoothLoss'
    assert cfg.custom_hooks[0].type == 'EMAHook'

    scene_cls_split.main([str(datasets[style] / folder), '--train-ratio', str(ratio)])
    cfg = shrink(cfg, datasets[style], tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    assert runner.message_hub.get_scalar('val/accuracy/top1') is not None
    check_accuracy_evaluator(runner)
    # layer-wise lr decay reached the optimizer: stem lr = head lr * 0.9^5
    groups = runner.optim_wrapper.optimizer.param_groups
    lrs = {g['layer_id']: g['lr'] for g in groups}
    assert lrs[0] == pytest.approx(lrs[5] * 0.9**5)
