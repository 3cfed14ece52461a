"""A/B/label dataset, planted-change pairs and the change metric."""
import json
import os
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from rsvheat_mm.datasets.planted_changes import make_planted_change_dataset


SMALL_SPLITS = {
    'train': dict(bases=['loveda/img_dir/0.png', 'scenes/3.png'], objects=['loveda0'],
                  pairs_per_base=1),
    'val': dict(bases=['loveda/img_dir/2.png'], objects=['potsdam'],
                textures=['scenes/5.png'], pairs_per_base=2),
}


@pytest.fixture(scope='module')
def planted(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('planted'))
    names = make_planted_change_dataset(root, SMALL_SPLITS, seed=1, max_size=384)
    return root, names


def test_planted_pairs_label_exactly_the_changes(planted):
    root, names = planted
    assert names == {'train': ['loveda_0_0', 'scenes_3_0'], 'val': ['loveda_2_0', 'loveda_2_1']}
    records = json.load(open(osp.join(root, 'val', 'planted_changes.json')))['pairs']
    for split, split_names in names.items():
        recs = json.load(open(osp.join(root, split, 'planted_changes.json')))['pairs']
        for name in split_names:
            a = mmcv.imread(osp.join(root, split, 'A', name + '.png')).astype(np.float32)
            b = mmcv.imread(osp.join(root, split, 'B', name + '.png')).astype(np.float32)
            label = mmcv.imread(osp.join(root, split, 'label', name + '.png'), 'unchanged')
            assert a.shape == b.shape == (384, 384, 3) and label.shape == (384, 384)
            assert set(np.unique(label)) == {0, 255}  # LEVIR encoding
            changed = label > 0
            assert changed.sum() == recs[name]['changed_pixels'] > 0
            diff = np.abs(a - b).mean(axis=2)
            # unchanged pixels differ only by jitter/photometric noise, never exactly
            assert 0 < diff[~changed].mean() < 25 and (diff[~changed] > 0).mean() > 0.5
            assert diff[changed].mean() > 2 * diff[~changed].mean()
            # every planted item is inside the image and inside the label
            for item in recs[name]['planted']:
                x0, y0, x1, y1 = item['bbox']
                assert 0 <= x0 < x1 <= 384 and 0 <= y0 < y1 <= 384
                assert changed[y0:y1, x0:x1].sum() >= item['pixels'] > 0
    assert records['loveda_2_0']['objects_from'] == ['potsdam']


def test_planted_pairs_are_reproducible(tmp_path):
    split = {'val': SMALL_SPLITS['val']}
    for out, seed in (('one', 4), ('two', 4), ('other', 5)):
        make_planted_change_dataset(str(tmp_path / out), split, seed=seed, max_size=256)

    def read(out, sub):
        return mmcv.imread(str(tmp_path / out / 'val' / sub / 'loveda_2_1.png'), 'unchanged')

    for sub in ('A', 'B', 'label'):
        np.testing.assert_array_equal(read('one', sub), read('two', sub))
    assert not np.array_equal(read('one', 'label'), read('other', 'label'))


def _dataset(root, **kwargs):
    from mmseg.registry import DATASETS
    cfg = dict(type='BitemporalCDDataset', data_root=root,
               data_prefix=dict(img_path='val/A', img_path2='val/B', seg_map_path='val/label'),
               pipeline=[dict(type='LoadBitemporalImages'), dict(type='LoadBitemporalChangeLabel'),
                         dict(type='PackBitemporalInputs')])
    cfg.update(kwargs)
    return DATASETS.build(cfg)


def test_dataset_reads_levir_layout(planted):
    root, _ = planted
    ds = _dataset(root)
    assert len(ds) == 2 and ds.metainfo['classes'] == ('unchanged', 'changed')
    info = ds.get_data_info(1)
    assert info['img_path'].endswith('val/A/loveda_2_1.png')
    assert info['img_path2'].endswith('val/B/loveda_2_1.png')
    assert info['seg_map_path'].endswith('val/label/loveda_2_1.png')
    item = ds[0]
    assert tuple(item['inputs'].shape) == (6, 384, 384)
    assert set(item['data_samples'].gt_sem_seg.data.unique().tolist()) == {0, 1}
    # split list, names with or without suffix
    with open(osp.join(root, 'list.txt'), 'w') as f:
        f.write('loveda_2_1.png\n\nloveda_2_0\n')
    ds = _dataset(root, ann_file='list.txt')
    assert [osp.basename(d['img_path']) for d in ds.load_data_list()] == [
        'loveda_2_1.png', 'loveda_2_0.png']
    # unlabeled set: no seg_map_path key
    ds = _dataset(root, data_prefix=dict(img_path='val/A', img_path2='val/B'),
                  pipeline=[dict(type='LoadBitemporalImages'), dict(type='PackBitemporalInputs')])
    assert 'seg_map_path' not in ds.get_data_info(0) and ds[0]['inputs'].shape[0] == 6


def test_dataset_errors_name_the_missing_file(planted, tmp_path):
    root, _ = planted
    for sub in ('A', 'B', 'label'):
        os.makedirs(tmp_path / 'val' / sub)
        for name in ('loveda_2_0', 'loveda_2_1'):
            src = osp.join(root, 'val', sub, name + '.png')
            if not (sub == 'B' and name == 'loveda_2_1'):
                os.symlink(src, tmp_path / 'val' / sub / (name + '.png'))
    with pytest.raises(FileNotFoundError, match=r'(?s)1 file.*val/B/loveda_2_1\.png'):
        _dataset(str(tmp_path))
    with pytest.raises(FileNotFoundError, match='date-A folder .*nowhere'):
        _dataset(str(tmp_path), data_prefix=dict(img_path='nowhere', img_path2='val/B'))
    with pytest.raises(FileNotFoundError, match=r'no `\*\.tif` pairs'):
        _dataset(str(tmp_path), img_suffix='.tif')


def _sample(pred, label, path='x/A/p.png'):
    s = SegDataSample(metainfo=dict(img_path=path))
    s.pred_sem_seg = PixelData(data=torch.as_tensor(pred)[None])
    s.gt_sem_seg = PixelData(data=torch.as_tensor(label)[None])
    return s.to_dict()


def test_metric_matches_hand_computed_confusion(tmp_path):
    from mmseg.registry import METRICS
    metric = METRICS.build(dict(type='CDChangeMetric', output_dir=str(tmp_path / 'masks')))
    metric.dataset_meta = dict(classes=('unchanged', 'changed'))
    # image 1 (255 = ignored): TP=2 FP=1 FN=1 TN=3, one ignored pixel predicted changed
    pred1 = np.array([[1, 1, 1, 0], [0, 0, 0, 1]])
    lab1 = np.array([[1, 1, 0, 1], [0, 0, 0, 255]])
    # image 2: TP=1 FP=0 FN=3 TN=4
    pred2 = np.array([[1, 0, 0, 0], [0, 0, 0, 0]])
    lab2 = np.array([[1, 1, 1, 1], [0, 0, 0, 0]])
    metric.process({}, [_sample(pred1, lab1, 'd/A/one.png'), _sample(pred2, lab2, 'd/A/two.png')])
    res = metric.evaluate(2)
    tp, fp, fn, tn = 3, 1, 4, 7  # summed over the dataset, not averaged per image
    p, r = tp / (tp + fp), tp / (tp + fn)
    oa = (tp + tn) / 15
    pe = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / 15 ** 2
    expected = dict(F1=2 * p * r / (p + r), precision=p, recall=r, IoU=tp / (tp + fp + fn),
                    OA=oa, kappa=(oa - pe) / (1 - pe), IoU_unchanged=tn / (tn + fp + fn))
    expected['mIoU'] = (expected['IoU'] + expected['IoU_unchanged']) / 2
    assert set(res) == set(expected)
    for key, value in expected.items():
        assert res[key] == pytest.approx(round(100 * value, 2), abs=1e-9), key
    assert res['F1'] == 54.55  # 2*3 / (2*3 + 1 + 4) = 6/11
    # predicted masks written as 0/255 PNGs named after date A
    out = mmcv.imread(str(tmp_path / 'masks' / 'one.png'), 'unchanged')
    np.testing.assert_array_equal(out, pred1 * 255)


def test_metric_edge_cases():
    from rsvheat_mm.evaluation.cd_metric import change_scores
    # nothing to find and nothing found: precision/recall/F1 fall back to zero_division
    s = change_scores(0, 0, 0, 10, zero_division=1.0)
    assert s['F1'] == 1.0 and s['OA'] == 1.0 and s['IoU_unchanged'] == 1.0
    s = change_scores(0, 5, 0, 5)
    assert s['precision'] == 0 and s['recall'] == 0 and s['F1'] == 0 and s['OA'] == 0.5
