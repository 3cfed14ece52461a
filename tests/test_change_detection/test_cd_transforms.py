"""Bi-temporal transforms keep the two dates and the label aligned."""
import os.path as osp

import cv2
import mmcv
import numpy as np
import pytest
from mmcv.transforms import Compose

from tests.helpers import DEMO_DATA


@pytest.fixture(scope='module')
def pair_files(tmp_path_factory):
    """Date A / B = two different real LoveDA tiles (crops), label = buildings of A."""
    root = tmp_path_factory.mktemp('cd_pair')
    a = mmcv.imread(osp.join(DEMO_DATA, 'loveda/img_dir/0.png'))[:320, :288]
    b = mmcv.imread(osp.join(DEMO_DATA, 'loveda/img_dir/1.png'))[:320, :288]
    lab = mmcv.imread(osp.join(DEMO_DATA, 'loveda/ann_dir/0.png'), 'unchanged')[:320, :288]
    change = ((lab == 2) | (lab == 3)).astype(np.uint8) * 255  # LEVIR-style 0/255
    assert 0 < change.mean() < 255
    for name, arr in (('A.png', a), ('B.png', b), ('label.png', change)):
        cv2.imwrite(str(root / name), arr)
    return dict(img_path=str(root / 'A.png'), img_path2=str(root / 'B.png'),
                seg_map_path=str(root / 'label.png'), a=a, b=b, label=(change > 0).astype(np.uint8))


def _info(pair_files):
    return dict(img_path=pair_files['img_path'], img_path2=pair_files['img_path2'],
                seg_map_path=pair_files['seg_map_path'], seg_fields=[],
                reduce_zero_label=False)


LOAD = [dict(type='LoadBitemporalImages'), dict(type='LoadBitemporalChangeLabel')]

_DIHEDRAL = [lambda x, k=k, f=f: np.flip(np.rot90(x, k), 1) if f else np.rot90(x, k)
             for k in range(4) for f in (False, True)]


def _locate(out, original):
    """(x, y) where ``out`` is an exact crop of ``original``, or None."""
    res = cv2.matchTemplate(original, np.ascontiguousarray(out), cv2.TM_SQDIFF)
    _, _, (x, y), _ = cv2.minMaxLoc(res)
    h, w = out.shape[:2]
    return (x, y) if np.array_equal(original[y:y + h, x:x + w], out) else None


def _undo_geometry(results, pair_files):
    """Find the dihedral transform + crop box that maps the originals to ``results``;
    assert it is the same for date A, date B and the label."""
    img, label = results['img'], results['gt_seg_map']
    assert img.shape[2] == 6 and results['date_channels'] == 3
    out_a, out_b = img[..., :3], img[..., 3:]
    for inverse in _DIHEDRAL:  # try every symmetry of the square
        cand_a = np.ascontiguousarray(inverse(out_a))
        box = _locate(cand_a, pair_files['a'])
        if box is None:
            continue
        x, y = box
        h, w = cand_a.shape[:2]
        np.testing.assert_array_equal(inverse(out_b), pair_files['b'][y:y + h, x:x + w])
        np.testing.assert_array_equal(inverse(label), pair_files['label'][y:y + h, x:x + w])
        return box
    raise AssertionError('date A is not a (rotated/flipped) crop of the original')


def test_load_pair_and_binary_label(pair_files):
    out = Compose(LOAD)(_info(pair_files))
    np.testing.assert_array_equal(out['img'][..., :3], pair_files['a'])
    np.testing.assert_array_equal(out['img'][..., 3:], pair_files['b'])
    np.testing.assert_array_equal(out['gt_seg_map'], pair_files['label'])  # 255 -> 1
    assert out['ori_shape'] == (320, 288) and out['seg_fields'] == ['gt_seg_map']


@pytest.mark.parametrize('seed', range(6))
def test_crop_and_flips_move_both_dates_and_label_together(pair_files, seed):
    np.random.seed(seed)
    pipeline = Compose(LOAD + [
        dict(type='RandomCrop', crop_size=(96, 128)),
        dict(type='RandomRotFlip', rotate_prob=0., flip_prob=0.5),
        dict(type='RandomFlip', prob=0.5, direction=['horizontal', 'vertical']),
    ])
    boxes = set()
    for _ in range(4):
        out = pipeline(_info(pair_files))
        boxes.add(_undo_geometry(out, pair_files))
    assert len(boxes) > 1, 'RandomCrop should pick different boxes'


def test_forced_flip_is_applied_to_both_dates(pair_files):
    out = Compose(LOAD + [dict(type='RandomFlip', prob=1.0, direction='vertical')])(
        _info(pair_files))
    np.testing.assert_array_equal(out['img'][..., :3], pair_files['a'][::-1])
    np.testing.assert_array_equal(out['img'][..., 3:], pair_files['b'][::-1])
    np.testing.assert_array_equal(out['gt_seg_map'], pair_files['label'][::-1])


def test_rotate_uses_one_angle(pair_files):
    out = Compose(LOAD + [dict(type='BitemporalRandomRotate', prob=1., degree=(33, 33))])(
        _info(pair_files))
    for sl, ref in ((slice(0, 3), pair_files['a']), (slice(3, 6), pair_files['b'])):
        np.testing.assert_array_equal(out['img'][..., sl], mmcv.imrotate(ref, 33))
    expected = mmcv.imrotate(pair_files['label'], 33, border_value=255, interpolation='nearest')
    np.testing.assert_array_equal(out['gt_seg_map'], expected)
    assert (out['gt_seg_map'] == 255).any()  # rotated-in corners are ignored


def test_resize_per_date_any_interpolation(pair_files):
    # 'area' is what OpenCV refuses on a 6-channel array
    out = Compose(LOAD + [dict(type='BitemporalResize', scale=(144, 160), keep_ratio=False,
                               interpolation='area')])(_info(pair_files))
    assert out['img'].shape == (160, 144, 6) and out['img_shape'] == (160, 144)
    np.testing.assert_array_equal(out['img'][..., 3:],
                                  mmcv.imresize(pair_files['b'], (144, 160), interpolation='area'))
    assert out['gt_seg_map'].shape == (160, 144)
    # as the resize type of mmcv's RandomResize (multi-scale training)
    out = Compose(LOAD + [dict(type='RandomResize', scale=(288, 320), ratio_range=(0.5, 0.5),
                               keep_ratio=True, resize_type='BitemporalResize')])(_info(pair_files))
    assert out['img'].shape == (160, 144, 6) and out['gt_seg_map'].shape == (160, 144)


def test_photometric_independent_or_consistent(pair_files):
    same = dict(_info(pair_files), img_path2=pair_files['img_path'])  # A == B
    np.random.seed(3)
    consistent = dict(type='BitemporalPhotoMetricDistortion', consistent=True)
    out = Compose(LOAD + [consistent])(dict(same))
    np.testing.assert_array_equal(out['img'][..., :3], out['img'][..., 3:])
    assert not np.array_equal(out['img'][..., :3], pair_files['a'])
    np.random.seed(3)
    out = Compose(LOAD + [dict(type='BitemporalPhotoMetricDistortion')])(dict(same))
    assert not np.array_equal(out['img'][..., :3], out['img'][..., 3:])
    np.testing.assert_array_equal(out['gt_seg_map'], pair_files['label'])


def test_exchange_time_swaps_dates_and_paths(pair_files):
    out = Compose(LOAD + [dict(type='BitemporalExchangeTime', prob=1.)])(_info(pair_files))
    np.testing.assert_array_equal(out['img'][..., :3], pair_files['b'])
    np.testing.assert_array_equal(out['img'][..., 3:], pair_files['a'])
    np.testing.assert_array_equal(out['gt_seg_map'], pair_files['label'])
    assert out['exchanged'] and out['img_path'] == pair_files['img_path2']
    out = Compose(LOAD + [dict(type='BitemporalExchangeTime', prob=0.)])(_info(pair_files))
    np.testing.assert_array_equal(out['img'][..., :3], pair_files['a'])
    assert not out['exchanged']


def test_pack_pair(pair_files):
    out = Compose(LOAD + [dict(type='PackBitemporalInputs')])(_info(pair_files))
    assert tuple(out['inputs'].shape) == (6, 320, 288)
    np.testing.assert_array_equal(out['inputs'][3:].permute(1, 2, 0).numpy(), pair_files['b'])
    meta = out['data_samples'].metainfo
    assert meta['img_path2'] == pair_files['img_path2'] and meta['date_channels'] == 3
    assert out['data_samples'].gt_sem_seg.data.shape == (1, 320, 288)


def test_label_encodings_and_errors(tmp_path, pair_files):
    from rsvheat_mm.datasets.transforms.bitemporal import LoadBitemporalChangeLabel
    raw = np.array([[0, 1, 255], [7, 0, 200]], np.uint8)
    cv2.imwrite(str(tmp_path / 'l.png'), raw)
    cv2.imwrite(str(tmp_path / 'rgb.png'), np.stack([raw] * 3, -1))
    for name in ('l.png', 'rgb.png'):
        out = LoadBitemporalChangeLabel(ignore_values=(7, ))(
            dict(seg_map_path=str(tmp_path / name), seg_fields=[]))
        np.testing.assert_array_equal(out['gt_seg_map'], [[0, 1, 1], [255, 0, 1]])
    out = LoadBitemporalChangeLabel(threshold=127)(
        dict(seg_map_path=str(tmp_path / 'l.png'), seg_fields=[]))
    np.testing.assert_array_equal(out['gt_seg_map'], [[0, 0, 1], [0, 0, 1]])
    with pytest.raises(ValueError, match='l.png is 3x2'):
        LoadBitemporalChangeLabel()(dict(seg_map_path=str(tmp_path / 'l.png'), seg_fields=[],
                                         ori_shape=(320, 288), img_path='x'))
    # dates of different sizes: one error naming both files
    cv2.imwrite(str(tmp_path / 'small.png'), pair_files['b'][:100])
    from rsvheat_mm.datasets.transforms.bitemporal import LoadBitemporalImages
    with pytest.raises(ValueError, match=r'A\.png.*small\.png'):
        LoadBitemporalImages()(dict(img_path=pair_files['img_path'],
                                    img_path2=str(tmp_path / 'small.png')))
