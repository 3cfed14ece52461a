"""tools/dataset_converters/scene_cls_split.py on an AID-format folder."""
import os
import os.path as osp

import pytest

from tests.test_classification.fixtures import make_scene_dataset
from tools.dataset_converters import scene_cls_split


def _read(path):
    with open(path) as f:
        return [line.split() for line in f.read().splitlines()]


def test_stratified_seeded_split(tmp_path):
    root = tmp_path / 'aid' / 'AID'
    counts = make_scene_dataset(root, 'aid')
    out = scene_cls_split.main([str(root), '--train-ratio', '0.2', '--seed', '0'])
    assert out['train'] == str(tmp_path / 'aid' / 'splits' / 'train_20pct_seed0.txt')
    classes = open(out['classes']).read().split()
    assert classes == sorted(counts) == ['Airport', 'BaseballField', 'Port']
    train, test = _read(out['train']), _read(out['test'])
    per_class = {c: [p for p, label in train if int(label) == i] for i, c in enumerate(classes)}
    # round(0.2 * n) per class, at least one
    assert {c: len(v) for c, v in per_class.items()} == {'Airport': 3, 'BaseballField': 2,
                                                         'Port': 1}
    for path, label in train + test:
        assert path.split('/')[0] == classes[int(label)]
        assert osp.isfile(root / path)
    assert not {p for p, _ in train} & {p for p, _ in test}
    assert len(train) + len(test) == sum(counts.values())

    # same seed -> same files; another seed -> another draw
    again = scene_cls_split.main([str(root), '--train-ratio', '0.2', '--seed', '0',
                                  '-o', str(tmp_path / 'again')])
    assert _read(again['train']) == train
    other = scene_cls_split.main([str(root), '--train-ratio', '0.2', '--seed', '1',
                                  '-o', str(tmp_path / 'again')])
    assert _read(other['train']) != train
    half = scene_cls_split.main([str(root), '--train-ratio', '0.5'])
    assert half['train'].endswith('train_50pct_seed0.txt') and len(_read(half['train'])) == 15


def test_split_rejects_bad_folders(tmp_path):
    root = tmp_path / 'AID'
    make_scene_dataset(root, 'nwpu')
    os.makedirs(root / 'empty_class')
    with pytest.raises(ValueError, match='empty_class has 0 image'):
        scene_cls_split.main([str(root), '--train-ratio', '0.2'])
    os.rmdir(root / 'empty_class')
    scene_cls_split.main([str(root), '--train-ratio', '0.2'])
    os.rename(root / 'harbor', root / 'zz_harbor')  # class list changes under the same splits
    with pytest.raises(ValueError, match='classes.txt lists other classes'):
        scene_cls_split.main([str(root), '--train-ratio', '0.1'])
    with pytest.raises(FileNotFoundError, match='not a directory'):
        scene_cls_split.main([str(tmp_path / 'missing'), '--train-ratio', '0.2'])
