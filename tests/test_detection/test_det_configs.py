"""Every detection config builds, trains two iterations and evaluates on
fixtures in the datasets' real formats, on CPU (tiny backbone and heads)."""
import math
import os
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from rsvheat_mm.datasets import dota_split
from rsvheat_mm.datasets import rs_det_formats as fmt
from tests.helpers import ROOT
from tests.test_detection.fixtures import (dior_hbb_xml, load_tool, make_dior,
                                           make_dota_scene, make_fair1m, make_sar_aircraft,
                                           tiny_det_cfg)

DET = osp.join(ROOT, 'configs', 'detection')
RDET = osp.join(ROOT, 'configs', 'rotated_detection')


def train_and_validate(cfg):
    runner = Runner.from_cfg(cfg)
    runner.train()
    hub = runner.message_hub
    loss = hub.get_scalar('train/loss').current()
    assert math.isfinite(loss) and loss > 0
    assert runner.iter == cfg.train_cfg.max_iters
    assert osp.isfile(osp.join(cfg.work_dir, f'iter_{cfg.train_cfg.max_iters}.pth'))
    return runner, {k[len('val/'):]: v.current() for k, v in hub.log_scalars.items()
                    if k.startswith('val/')}


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
    assert 0.0 <= metrics['pascal_voc/mAP'] <= 1.0


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
    cfg = Config.fromfile(osp.join(DET, 'faster-rcnn_rsvheat-b_fpn_8xb2-12e_sar-aircraft-800x800.py'))
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


def _split(img_dir, ann_dir, save_dir):
    return dota_split.split_dota_dataset([img_dir], [ann_dir] if ann_dir else None, save_dir,
                                         sizes=[128], gaps=[42])


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
    assert 0.0 <= metrics['dota/mAP'] <= 1.0 and 'dota/AP50' in metrics


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

    cfg = Config.fromfile(osp.join(RDET, 'oriented-rcnn-le90_rsvheat-b_fpn_8xb2-12e_fair1m-2.0-1024.py'))
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
    assert 0.0 <= metrics['dota/mAP'] <= 1.0

    # test split (no labels): merged Task1 files -> FAIR1M server XML
    assert runner.test() == {}
    task1 = fmt.read_dota_task1(str(tmp_path / 'Task1'), fmt.FAIR1M_DOTA_CLASSES)
    assert list(task1) == ['1'] and len(task1['1']) > 0
    fair1m.main(['task1-to-xml', str(tmp_path / 'Task1'), '--out-dir', str(tmp_path / 'sub'),
                 '--img-dir', str(root / 'test' / 'images')])
    res = fmt.read_fair1m_xml(str(tmp_path / 'sub' / '1.xml'))
    assert len(res['objects']) == len(task1['1'])
    assert {o['name'] for o in res['objects']} <= set(fmt.FAIR1M_CLASSES)
