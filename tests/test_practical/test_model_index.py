"""model-index.yml / metafiles: every config listed once, with task, dataset and metrics
consistent with the config itself; MANIFEST.in packs configs, tools and the index."""
import fnmatch
import glob
import subprocess
import os.path as osp
import re

import pytest
from mmengine.config import Config
from mmengine.fileio import load

from tests.helpers import ROOT

TASK_OF_SCOPE = {
    'Scene Classification': ('mmpretrain', ),
    'Semantic Segmentation': ('mmseg', ),
    'Change Detection': ('mmseg', ),
    'Object Detection': ('mmdet', ),
    'Oriented Object Detection': ('mmrotate', ),
}
# metric name in the metafile -> (evaluator type, condition on the evaluator config)
METRIC_SOURCES = {
    'OA': {'Accuracy': None, 'RSVHeatSegMetric': None},
    'mIoU': {'RSVHeatSegMetric': lambda ev: 'mIoU' in ev.get('iou_metrics', ['mIoU'])},
    'mF1': {'RSVHeatSegMetric': lambda ev: 'mFscore' in ev.get('iou_metrics', ['mFscore'])},
    'mAP50': {'VOCMetric': lambda ev: 0.5 in list(ev.get('iou_thrs', [0.5]))},
    'mAP': {'MergedDOTAMetric': None, 'DOTAMetric': None},
    'F1': {'CDChangeMetric': None},
}


def _index():
    index = load(osp.join(ROOT, 'model-index.yml'))
    models = []
    for meta_path in index['Import']:
        meta = load(osp.join(ROOT, meta_path))
        collections = {c['Name'] for c in meta.get('Collections', [])}
        for model in meta['Models']:
            assert model['In Collection'] in collections, (meta_path, model['Name'])
            models.append((meta_path, model))
    return models


def _configs():
    return sorted(p for p in glob.glob(osp.join(ROOT, 'configs', '*', '*.py'))
                  if '_base_' not in p)


def test_every_config_listed_once():
    listed = [osp.normpath(osp.join(ROOT, m['Config'])) for _, m in _index()]
    configs = [osp.normpath(p) for p in _configs()]
    missing = sorted(set(configs) - set(listed))
    assert not missing, f'configs without a model-index entry: {missing}'
    assert len(listed) == len(set(listed)), 'a config is listed twice'
    assert all(osp.isfile(p) for p in listed)
    names = [m['Name'] for _, m in _index()]
    assert len(names) == len(set(names))
    for meta_path, model in _index():
        # metafiles live next to their configs; names are the config file names
        assert osp.dirname(model['Config']) == osp.dirname(meta_path)
        assert model['Name'] == osp.splitext(osp.basename(model['Config']))[0]


def _param(entry):
    tasks = {r['Task'] for r in entry[1].get('Results') or []}
    marks = [pytest.mark.needs_mmrotate] if 'Oriented Object Detection' in tasks else []
    return pytest.param(entry, marks=marks, id=entry[1]['Name'])


@pytest.mark.parametrize('entry', [_param(e) for e in _index()])
def test_entry_matches_config(entry):
    _, model = entry
    cfg = Config.fromfile(osp.join(ROOT, model['Config']))
    meta = model['Metadata']
    assert meta['Training Data']
    # batch size: GPUs x per-GPU batch of the name, and the config's per-GPU batch
    gpus, per_gpu = map(int, re.search(r'_(\d+)xb(\d+)', model['Name']).groups())
    assert meta['Batch Size'] == gpus * per_gpu
    assert cfg.train_dataloader.batch_size == per_gpu
    train_cfg = cfg.get('train_cfg') or {}
    if 'Iterations' in meta:
        assert train_cfg.get('max_iters') == meta['Iterations']
    else:
        assert train_cfg.get('max_epochs') == meta['Epochs']
    if model['Results'] is None:  # pretraining: no task metric
        assert 'pretrain' in model['Name'] and cfg.get('val_evaluator') is None
        return
    evaluator = cfg.get('test_evaluator') or cfg.get('val_evaluator')
    for result in model['Results']:
        assert cfg.default_scope in TASK_OF_SCOPE[result['Task']]
        assert result['Dataset']
        assert result['Metrics']
        for metric, value in result['Metrics'].items():
            assert value is None or 0 < value <= 100, (metric, value)
            sources = METRIC_SOURCES[metric]
            ev_type = evaluator['type'].split('.')[-1]
            assert ev_type in sources, f'{metric} is not computed by {ev_type}'
            condition = sources[ev_type]
            assert condition is None or condition(evaluator), \
                f'{ev_type} as configured does not report {metric}'


def test_manifest_ships_configs_tools_and_index():
    patterns = []
    with open(osp.join(ROOT, 'MANIFEST.in')) as f:
        for line in f:
            parts = line.split('#')[0].split()
            if not parts:
                continue
            if parts[0] == 'include':
                patterns += [(p, None) for p in parts[1:]]
            elif parts[0] == 'recursive-include':
                patterns += [(parts[1], p) for p in parts[2:]]

    def shipped(rel):
        for base, pat in patterns:
            if pat is None and fnmatch.fnmatch(rel, base):
                return True
            if pat is not None and rel.startswith(base + '/') and \
                    fnmatch.fnmatch(osp.basename(rel), pat):
                return True
        return False

    # the repository's files (not what .gitignore keeps out, e.g. the wheels
    # tools/analysis/gpu_check.sh --fetch-wheels downloads)
    listed = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard',
                             'configs', 'tools'], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.split()
    files = ['model-index.yml'] + [f for f in listed if osp.exists(osp.join(ROOT, f))]
    unshipped = [f for f in files if not shipped(f)]
    assert not unshipped, f'MANIFEST.in does not ship {unshipped}'
    # the mim layout the package serves (rsvheat_mm/.mim/...) is covered as well
    assert shipped('rsvheat_mm/.mim/model-index.yml')
    assert shipped('rsvheat_mm/.mim/configs/demo/metafile.yml')
    assert shipped('rsvheat_mm/.mim/tools/infer.py')
