"""Every detection config builds, trains two iterations and evaluates on
fixtures in the datasets' real formats, on CPU (tiny backbone and heads)."""
import math
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from rsvheat_mm.datasets import dota_split
from rsvheat_mm.datasets import rs_det_formats as fmt
from tests.helpers import ROOT, evaluate, load_tool, val_metrics
from tests.test_detection.fixtures import (dior_hbb_xml, make_dior, make_dota_scene,
                                           make_fair1m, make_sar_aircraft, tiny_det_cfg)

DET = osp.join(ROOT, 'configs', 'detection')
RDET = osp.join(ROOT, 'configs', 'rotated_detection')


def ap_with_recall(recall, eleven_points):
    """VOC AP of a ranking whose precision is 1 up to ``recall`` and which
    finds nothing more (the 11-point or the area definition)."""
    if recall == 0:  # no detection at all
        return 0.
    if eleven_points:
        return sum(recall >= t for t in np.arange(0, 1 + 1e-3, 0.1)) / 11
    return recall


def _eleven_points(metric):
    mode = getattr(metric, 'eval_mode', None)
    return getattr(metric, 'use_07_metric', mode == '11points')


def check_voc_evaluator(runner):
    """The config's VOC evaluator against the oracle: the annotations (in
    original image coordinates) fed as predictions give mAP 1; one object
    of the most frequent class left out gives that class the AP of its
    recall; a false positive ranked above everything halves the AP of a class
    with a single object."""
    from mmengine.structures import InstanceData
    ds = runner.val_dataloader.dataset
    items = []
    for i in range(len(ds)):
        inst = [x for x in ds.get_data_info(i)['instances'] if not x['ignore_flag']]
        boxes = torch.tensor([x['bbox'] for x in inst], dtype=torch.float32).reshape(-1, 4)
        items.append((ds[i]['data_samples'], boxes, torch.tensor([x['bbox_label'] for x in inst])))
    labels = torch.cat([lab for _, _, lab in items])
    classes, counts = labels.unique(return_counts=True)
    drop_cls = int(classes[counts.argmax()])

    def score(drop_one=False, false_positive=False):
        samples, dropped = [], False
        for sample, boxes, lab in items:
            scores = torch.ones(len(lab))
            keep = torch.ones(len(lab), dtype=torch.bool)
            if drop_one and not dropped and (lab == drop_cls).any():
                keep[int((lab == drop_cls).nonzero()[0])] = False
                dropped = True
            boxes, lab, scores = boxes[keep], lab[keep], scores[keep]
            if false_positive and len(lab):  # a tiny box far from every object
                far = torch.tensor([[0., 0., 4., 4.]]) + boxes.new_tensor(
                    [boxes[:, 2].max() + 8, boxes[:, 3].max() + 8] * 2)
                boxes, lab = torch.cat([boxes, far]), torch.cat([lab, lab[:1]])
                scores = torch.cat([scores, scores.new_tensor([2.])])
            s = sample.clone()
            s.pred_instances = InstanceData(bboxes=boxes, labels=lab, scores=scores)
            samples.append(s)
        return evaluate(runner.val_evaluator, samples)['pascal_voc/mAP']

    eleven = _eleven_points(runner.val_evaluator.metrics[0])
    assert score() == pytest.approx(1.0, abs=1e-3)
    n = int(counts.max())
    expected = (len(classes) - 1 + ap_with_recall((n - 1) / n, eleven)) / len(classes)
    assert score(drop_one=True) == pytest.approx(expected, abs=1e-3)
    if len(labels) == 1:
        assert score(false_positive=True) == pytest.approx(0.5, abs=1e-3)


def check_merged_dota_evaluator(runner, scene_ann_dir):
    """MergedDOTAMetric of the config against the oracle: each scene's
    non-difficult objects (read from its label file here) fed as the
    predictions of a patch at the scene's origin give mAP 1; one object of
    the most frequent class left out gives that class the AP of its
    recall."""
    from mmrotate.structures.bbox import qbox2rbox
    metric = runner.val_evaluator.metrics[0]
    classes = list(runner.val_dataloader.dataset.metainfo['classes'])
    aliases = dict(zip(fmt.FAIR1M_DOTA_CLASSES, fmt.FAIR1M_CLASSES))
    scenes = {}
    for name in sorted(os.listdir(scene_ann_dir)):
        objects = [o for o in fmt.read_dota_txt(osp.join(scene_ann_dir, name))['objects']
                   if o['difficult'] <= metric.diff_thr]
        labels = [classes.index(o['name'] if o['name'] in classes else aliases[o['name']])
                  for o in objects]
        polys = torch.tensor([o['poly'] for o in objects], dtype=torch.float32).reshape(-1, 8)
        scenes[osp.splitext(name)[0]] = (qbox2rbox(polys), torch.tensor(labels))
    labels = torch.cat([lab for _, lab in scenes.values()])
    classes_present, counts = labels.unique(return_counts=True)
    drop_cls = int(classes_present[counts.argmax()])

    def score(drop_one=False):
        samples, dropped = [], False
        for scene, (boxes, lab) in scenes.items():
            keep = torch.ones(len(lab), dtype=torch.bool)
            if drop_one and not dropped and (lab == drop_cls).any():
                keep[int((lab == drop_cls).nonzero()[0])] = False
                dropped = True
            samples.append(dict(img_id=f'{scene}__1024__0___0',
                                pred_instances=dict(bboxes=boxes[keep], labels=lab[keep],
                                                    scores=torch.ones(int(keep.sum())))))
        return evaluate(runner.val_evaluator, samples)['dota/mAP']

    assert score() == pytest.approx(1.0, abs=1e-3)
    n = int(counts.max())
    expected = (len(classes_present) - 1 + ap_with_recall((n - 1) / n, _eleven_points(metric)))
    assert score(drop_one=True) == pytest.approx(expected / len(classes_present), abs=1e-3)


def train_and_validate(cfg):
    runner = Runner.from_cfg(cfg)
    runner.train()
    hub = runner.message_hub
    loss = hub.get_scalar('train/loss').current()
    assert math.isfinite(loss) and loss > 0
    assert runner.iter == cfg.train_cfg.max_iters
    assert osp.isfile(osp.join(cfg.work_dir, f'iter_{cfg.train_cfg.max_iters}.pth'))
    return runner, val_metrics(runner)


def test_dior_faster_rcnn(tmp_path):
    root = make_dior(str(tmp_path / 'DIOR'))
    load_tool('dataset_converters/dior.py').main(['obb2hbb', root])
    cfg = Config.fromfile(osp.join(DET, 'faster-rcnn_rsvheat-b_fpn_8xb2-12e_dior-800x800.py'))
    cfg.train_dataloader.dataset.datasets[0].data_root = root + '/'
    cfg.train_dataloader.dataset.datasets[1].data_root = root + '/'
    cfg.val_dataloader.dataset.data_root = root + '/'
    tiny_det_cfg(cfg, tmp_path / 'work', scale=256)
    runner, metrics = train_and_validate(cfg)
    ds = runner.val_dataloader.dataset
    assert type(ds).__name__ == 'DIORHBBDataset' and len(ds) == 1
    inst = ds.get_data_info(0)['instances']
    assert inst == [dict(bbox=[133.0, 237.0, 684.0, 672.0], bbox_label=9, ignore_flag=0)]
    assert set(metrics) >= {'pascal_voc/mAP', 'pascal_voc/AP50'}
    check_voc_evaluator(runner)


def test_dior_dataset_names_case_insensitive_and_strict(tmp_path):
    import mmdet  # noqa: F401  (registers the dataset)
    from mmengine.registry import DATASETS
    root = make_dior(str(tmp_path / 'DIOR'))
    hbb = osp.join(root, 'Annotations', 'Horizontal Bounding Boxes', '00001.xml')
    os.makedirs(osp.dirname(hbb))
    with open(hbb, 'w') as f:  # DIOR's own capitalisation of the class
        f.write(dior_hbb_xml('00001', [('Expressway-Service-area', (10, 20, 110, 220)),
                                       ('golffield', (133, 237, 684, 672))]))
    ds = DATASETS.build(dict(type='DIORHBBDataset', data_root=root,
                             data_prefix=dict(sub_data_root=''),
                             ann_file='ImageSets/Main/test.txt', img_subdir='JPEGImages-test',
                             test_mode=True, pipeline=[]))
    labels = [i['bbox_label'] for i in ds.get_data_info(0)['instances']]
    assert [ds.metainfo['classes'][i] for i in labels] == ['expressway-service-area', 'golffield']
    with open(hbb, 'w') as f:
        f.write(dior_hbb_xml('00001', [('golf-field', (1, 2, 3, 4))]))
    with pytest.raises(fmt.AnnotationFormatError, match=r"00001\.xml.*'golf-field'"):
        DATASETS.build(dict(type='DIORHBBDataset', data_root=root,
                            data_prefix=dict(sub_data_root=''),
                            ann_file='ImageSets/Main/test.txt', img_subdir='JPEGImages-test',
                            test_mode=True, pipeline=[]))


def test_sar_aircraft_faster_rcnn_uses_sar_stem(tmp_path):
    root = str(tmp_path / 'SAR-AIRcraft-1.0')
    fixture = make_sar_aircraft(root, str(tmp_path))
    cfg = Config.fromfile(
        osp.join(DET, 'faster-rcnn_rsvheat-b_fpn_8xb2-12e_sar-aircraft-800x800.py'))
    cfg.train_dataloader.dataset.data_root = root + '/'
    cfg.val_dataloader.dataset.data_root = root + '/'
    tiny_det_cfg(cfg, tmp_path / 'work', scale=192)
    runner, metrics = train_and_validate(cfg)
    model = runner.model
    assert list(model.backbone.stems) == ['sar']
    assert model.backbone.stems['sar'].in_channels == 1
    ds = runner.val_dataloader.dataset
    data = ds[0]
    assert data['inputs'].shape[0] == 1  # one band reaches the model
    names = [ds.metainfo['classes'][i['bbox_label']] for i in ds.get_data_info(0)['instances']]
    assert names == fixture['names']
    assert 'pascal_voc/mAP' in metrics
    check_voc_evaluator(runner)


def _split(img_dir, ann_dir, save_dir):
    return dota_split.split_dota_dataset([img_dir], [ann_dir] if ann_dir else None, save_dir,
                                         sizes=[128], gaps=[42])


@pytest.mark.needs_mmrotate
def test_dota_oriented_rcnn_full_scene_eval(tmp_path):
    scene_root = tmp_path / 'DOTA'
    make_dota_scene(str(scene_root / 'val'))
    split_root = tmp_path / 'split_ss_dota'
    for name in ('trainval', 'val'):
        _split(str(scene_root / 'val' / 'images'), str(scene_root / 'val' / 'labelTxt'),
               str(split_root / name))
    cfg = Config.fromfile(osp.join(RDET, 'oriented-rcnn-le90_rsvheat-b_fpn_8xb2-12e_dota-1024.py'))
    for key in ('train_dataloader', 'val_dataloader'):
        cfg[key].dataset.data_root = str(split_root) + '/'
    cfg.val_evaluator.scene_ann_dir = str(scene_root / 'val' / 'labelTxt')
    tiny_det_cfg(cfg, tmp_path / 'work', scale=128)
    runner, metrics = train_and_validate(cfg)
    assert type(runner.val_evaluator.metrics[0]).__name__ == 'MergedDOTAMetric'
    assert {'dota/mAP', 'dota/AP50'} <= set(metrics)
    check_merged_dota_evaluator(runner, cfg.val_evaluator.scene_ann_dir)


@pytest.mark.needs_mmrotate
def test_fair1m_oriented_rcnn_train_eval_and_submission(tmp_path):
    root = tmp_path / 'FAIR1M2.0'
    make_fair1m(str(root), str(tmp_path), splits=('train', 'validation', 'test'))
    fair1m = load_tool('dataset_converters/fair1m.py')
    for split in ('train', 'validation'):
        fair1m.main(['to-dota', str(root / split / 'labelXml'), '--out-dir',
                     str(root / split / 'labelTxt')])
    split_root = root / 'split_ss'
    _split(str(root / 'train' / 'images'), str(root / 'train' / 'labelTxt'),
           str(split_root / 'train'))
    _split(str(root / 'validation' / 'images'), str(root / 'validation' / 'labelTxt'),
           str(split_root / 'val'))
    _split(str(root / 'test' / 'images'), None, str(split_root / 'test'))

    cfg = Config.fromfile(
        osp.join(RDET, 'oriented-rcnn-le90_rsvheat-b_fpn_8xb2-12e_fair1m-2.0-1024.py'))
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = str(split_root) + '/'
    cfg.val_evaluator.scene_ann_dir = str(root / 'validation' / 'labelTxt')
    cfg.test_evaluator.outfile_prefix = str(tmp_path / 'Task1')
    tiny_det_cfg(cfg, tmp_path / 'work', scale=128)
    cfg.model.test_cfg.rcnn.score_thr = 0.0  # an untrained model: keep its guesses
    runner, metrics = train_and_validate(cfg)
    ds = runner.train_dataloader.dataset
    assert type(ds).__name__ == 'FAIR1MDataset' and len(ds.metainfo['classes']) == 37
    labels = {ds.metainfo['classes'][i['bbox_label']]
              for k in range(len(ds)) for i in ds.get_data_info(k)['instances']}
    assert labels == {'Boeing737', 'A220', 'Boeing787', 'other-airplane'}
    assert 'dota/mAP' in metrics
    check_merged_dota_evaluator(runner, cfg.val_evaluator.scene_ann_dir)

    # test split (no labels): merged Task1 files -> FAIR1M server XML
    assert runner.test() == {}
    task1 = fmt.read_dota_task1(str(tmp_path / 'Task1'), fmt.FAIR1M_DOTA_CLASSES)
    assert list(task1) == ['1'] and len(task1['1']) > 0
    fair1m.main(['task1-to-xml', str(tmp_path / 'Task1'), '--out-dir', str(tmp_path / 'sub'),
                 '--img-dir', str(root / 'test' / 'images')])
    res = fmt.read_fair1m_xml(str(tmp_path / 'sub' / '1.xml'))
    assert len(res['objects']) == len(task1['1'])
    assert {o['name'] for o in res['objects']} <= set(fmt.FAIR1M_CLASSES)
