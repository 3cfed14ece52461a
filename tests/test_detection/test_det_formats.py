"""Annotation converters on the bundled real samples, round trips on box
geometry, the patch split and the merged full-scene metric."""
import contextlib
import io
import os.path as osp
import shutil
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest

from rsvheat_mm.datasets import dota_split, rs_det_formats as fmt
from tests.helpers import DEMO_DATA, PYTHON, load_tool, run_tool
from tests.test_detection.fixtures import (FAIR1M_TYPES, dior_hbb_xml, fair1m_xml,
                                           make_dior, make_dota_scene, make_fair1m)

DIOR_OBB = osp.join(DEMO_DATA, 'dior', 'Annotations', 'Oriented Bounding Boxes', '00001.xml')
DOTA_TXT = osp.join(DEMO_DATA, 'dota', 'labelTxt', 'P2805__1024__0___0.txt')


def run_main(script, *args):
    """Run a converter's ``main`` in-process (a subprocess costs seconds)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        load_tool(script.replace('tools/', '', 1)).main(list(args))
    return buf.getvalue()


def test_converter_scripts_run_standalone(tmp_path):
    root = make_dior(str(tmp_path / 'DIOR'))
    run_tool([PYTHON, 'tools/dataset_converters/dior.py', 'obb2hbb', root], timeout=300)
    assert osp.isfile(osp.join(root, 'Annotations', 'Horizontal Bounding Boxes', '00001.xml'))


# -- DIOR --------------------------------------------------------------------------------
def test_dior_obb_to_hbb_on_real_sample(tmp_path):
    root = make_dior(str(tmp_path / 'DIOR'))
    out = run_main('tools/dataset_converters/dior.py', 'obb2hbb', root)
    assert '1 horizontal-box XML files' in out
    hbb = osp.join(root, 'Annotations', 'Horizontal Bounding Boxes', '00001.xml')
    # DIOR's horizontal format, read with plain ElementTree
    xml = ET.parse(hbb).getroot()
    assert xml.findtext('filename') == '00001.jpg'
    assert [xml.findtext(f'size/{k}') for k in ('width', 'height', 'depth')] == ['800', '800', '3']
    (obj, ) = xml.findall('object')
    assert obj.findtext('name') == 'golffield'
    assert [obj.findtext(f'bndbox/{k}') for k in ('xmin', 'ymin', 'xmax', 'ymax')] == \
        ['133', '237', '684', '672']
    # round trip: the horizontal box is the enclosing box of DIOR-R's corners
    src = fmt.read_voc_xml(DIOR_OBB)['objects'][0]
    assert src['poly'] == [133, 237, 684, 237, 684, 672, 133, 672]
    back = fmt.read_voc_xml(hbb)['objects'][0]
    np.testing.assert_array_equal(back['bbox'], fmt.poly_to_hbb(src['poly']))
    np.testing.assert_array_equal(fmt.poly_to_hbb(fmt.hbb_to_poly(back['bbox'])), back['bbox'])


def test_dior_to_dota_labels(tmp_path):
    root = make_dior(str(tmp_path / 'DIOR'))
    run_main('tools/dataset_converters/dior.py', 'to-dota', root, '--out-dir',
             str(tmp_path / 'labelTxt'))
    ann = fmt.read_dota_txt(str(tmp_path / 'labelTxt' / '00001.txt'))
    assert ann['objects'] == [dict(poly=[133, 237, 684, 237, 684, 672, 133, 672],
                                   name='golffield', difficult=0)]


def test_voc_reader_errors_name_file_and_field(tmp_path):
    bad = tmp_path / 'bad.xml'
    bad.write_text(dior_hbb_xml('00002', [('golffield', (1, 2, 3, 4))]).replace(
        '<ymax>4</ymax>', '<ymax>x</ymax>'))
    with pytest.raises(fmt.AnnotationFormatError, match=r'bad\.xml.*<ymax>.*not a number'):
        fmt.read_voc_xml(str(bad))
    with pytest.raises(fmt.AnnotationFormatError, match=r"'bridges' is not one of the 20"):
        fmt.match_class('bridges', fmt.DIOR_CLASSES, 'x.xml')
    # DIOR's own capitalisation
    assert fmt.match_class('Expressway-Service-area', fmt.DIOR_CLASSES) == 6


# -- DOTA --------------------------------------------------------------------------------
def test_dota_label_round_trip_on_real_sample(tmp_path):
    ann = fmt.read_dota_txt(DOTA_TXT)
    assert [o['name'] for o in ann['objects']] == ['plane'] * 4
    assert ann['objects'][0]['poly'] == [359, 663, 369, 497, 543, 509, 531, 677]
    out = str(tmp_path / 'P2805.txt')
    fmt.write_dota_txt(out, ann['objects'], imagesource='GoogleEarth', gsd=0.146)
    back = fmt.read_dota_txt(out)
    assert back['objects'] == ann['objects']
    assert (back['imagesource'], back['gsd']) == ('GoogleEarth', 0.146)
    bad = tmp_path / 'bad.txt'
    bad.write_text('1 2 3 4 5 6 7 plane 0\n')
    with pytest.raises(fmt.AnnotationFormatError, match=r'bad\.txt: line 1'):
        fmt.read_dota_txt(str(bad))


@pytest.mark.needs_mmrotate  # patch splitting uses mmrotate's img_split.py
def test_split_and_merge_back_is_lossless(tmp_path):
    scene = make_dota_scene(str(tmp_path / 'dota'))
    img = cv2.imread(scene['img_path'])
    records = dota_split.split_dota_dataset(
        [str(tmp_path / 'dota' / 'images')], [str(tmp_path / 'dota' / 'labelTxt')],
        str(tmp_path / 'split'), sizes=[128], gaps=[42])
    # 170 px scene, 128 px windows, >= 42 px overlap -> starts 0 and 42 per axis
    assert sorted((r['x_start'], r['y_start']) for r in records) == \
        [(0, 0), (0, 42), (42, 0), (42, 42)]
    scene_polys = np.array([o['poly'] for o in scene['objects']])
    for rec in records:
        assert dota_split.parse_patch_id(rec['id']) == ('P2805', rec['x_start'], rec['y_start'])
        x, y = rec['x_start'], rec['y_start']
        patch = cv2.imread(str(tmp_path / 'split' / 'images' / (rec['id'] + '.png')))
        np.testing.assert_array_equal(patch, img[y:y + 128, x:x + 128])
        objs = fmt.read_dota_txt(str(tmp_path / 'split' / 'annfiles' / (rec['id'] + '.txt')))
        for obj in objs['objects']:
            # patch frame + offset == scene frame, for whole and cut objects
            back = np.array(obj['poly']) + np.tile([x, y], 4)
            assert np.abs(scene_polys - back).max(axis=1).min() < 1e-3
            whole = fmt.poly_to_hbb(obj['poly'])
            inside = whole[0] >= 0 and whole[1] >= 0 and whole[2] <= 128 and whole[3] <= 128
            assert obj['difficult'] == (0 if inside else 2)
    # every object lies whole in at least one patch
    assert sum(r['num_objects'] for r in records) >= len(scene_polys)
    with pytest.raises(FileExistsError, match='not empty'):
        dota_split.split_dota_dataset([str(tmp_path / 'dota' / 'images')], None,
                                      str(tmp_path / 'split'), sizes=[128], gaps=[42])


@pytest.mark.needs_mmrotate
def test_dota_split_cli_unlabelled(tmp_path):
    make_dota_scene(str(tmp_path / 'dota'))
    out = run_main('tools/dataset_converters/dota_split.py', '--img-dirs',
                   str(tmp_path / 'dota' / 'images'), '--sizes', '100', '--gaps', '30',
                   '--save-dir', str(tmp_path / 'test_split'))
    assert '4 patches from 1 scenes' in out
    assert not osp.exists(tmp_path / 'test_split' / 'annfiles')
    assert len(list((tmp_path / 'test_split' / 'images').iterdir())) == 4


# -- FAIR1M ------------------------------------------------------------------------------
def test_fair1m_to_dota_and_submission_round_trip(tmp_path):
    info = make_fair1m(str(tmp_path / 'FAIR1M'), str(tmp_path), splits=('train', ))
    xml_dir = tmp_path / 'FAIR1M' / 'train' / 'labelXml'
    run_main('tools/dataset_converters/fair1m.py', 'to-dota', str(xml_dir), '--out-dir',
             str(tmp_path / 'labelTxt'))
    ann = fmt.read_dota_txt(str(tmp_path / 'labelTxt' / '1.txt'))
    assert ann['imagesource'] == 'GF2/GF3'
    assert [o['name'] for o in ann['objects']] == \
        [fmt.fair1m_to_dota_name(n) for n, _ in info['objects']]
    for obj, (_, poly) in zip(ann['objects'], info['objects']):
        np.testing.assert_allclose(obj['poly'], poly, atol=1e-4)  # 5th point dropped

    # a name with a space survives DOTA's whitespace-separated files
    fixture = tmp_path / 'ship.xml'
    fixture.write_text(
        fair1m_xml('7', 100, 100, [('Liquid Cargo Ship', [1, 2, 30, 2, 30, 9, 1, 9])]))
    fmt.fair1m_xml_to_dota(str(fixture), str(tmp_path / 'ship.txt'))
    (obj, ) = fmt.read_dota_txt(str(tmp_path / 'ship.txt'))['objects']
    assert obj['name'] == 'Liquid_Cargo_Ship'

    # results: DOTA Task1 -> FAIR1M result XML -> read back
    per_image = {'1': [dict(label=fmt.FAIR1M_DOTA_CLASSES.index(fmt.fair1m_to_dota_name(n)),
                            score=0.5 + 0.1 * i, poly=p)
                       for i, (n, p) in enumerate(info['objects'])]}
    fmt.write_dota_task1(str(tmp_path / 'Task1'), fmt.FAIR1M_DOTA_CLASSES, per_image)
    assert len(list((tmp_path / 'Task1').iterdir())) == 37
    run_main('tools/dataset_converters/fair1m.py', 'task1-to-xml', str(tmp_path / 'Task1'),
             '--out-dir', str(tmp_path / 'submission'), '--img-dir',
             str(tmp_path / 'FAIR1M' / 'train' / 'images'))
    res = fmt.read_fair1m_xml(str(tmp_path / 'submission' / '1.xml'))
    assert res['filename'] == '1.tif'
    got = sorted((o['name'], round(o['score'], 4), tuple(np.round(o['poly'], 2)))
                 for o in res['objects'])
    want = sorted((n, round(0.5 + 0.1 * i, 4), tuple(np.round(p, 2)))
                  for i, (n, p) in enumerate(info['objects']))
    assert got == want
    assert {n for n, *_ in got} <= set(FAIR1M_TYPES)


def test_fair1m_reader_rejects_bad_points(tmp_path):
    bad = tmp_path / 'bad.xml'
    bad.write_text(fair1m_xml('1', 10, 10, [('Bus', [0, 0, 5, 0, 5, 5, 0, 5])]).replace(
        '<point>5.000000,0.000000</point>', ''))
    with pytest.raises(fmt.AnnotationFormatError, match=r'bad\.xml: <points> in <object> #0'):
        fmt.read_fair1m_xml(str(bad))
    unknown = tmp_path / 'unknown.xml'
    unknown.write_text(fair1m_xml('1', 10, 10, [('Spaceship', [0, 0, 5, 0, 5, 5, 0, 5])]))
    with pytest.raises(fmt.AnnotationFormatError, match=r"unknown\.xml.*'Spaceship'"):
        fmt.fair1m_xml_to_dota(str(unknown), str(tmp_path / 'u.txt'))
    assert not osp.exists(tmp_path / 'u.txt')


# -- merged full-scene metric -------------------------------------------------------------
def _patch_predictions(split_dir, drop_scene_objects=()):
    """Each patch 'predicts' its own labels (cut objects included), minus
    the copies of the scene objects in ``drop_scene_objects``."""
    import torch
    from mmrotate.structures.bbox import qbox2rbox
    samples = []
    for path in sorted((split_dir / 'annfiles').iterdir()):
        img_id = path.stem
        _, x, y = dota_split.parse_patch_id(img_id)
        objs = [o for o in fmt.read_dota_txt(str(path))['objects']]
        polys = torch.tensor([o['poly'] for o in objs], dtype=torch.float32).reshape(-1, 8)
        keep = [i for i, o in enumerate(objs)
                if not any(abs(o['poly'][0] + x - p[0]) < 1e-3
                           and abs(o['poly'][1] + y - p[1]) < 1e-3 for p in drop_scene_objects)]
        rboxes = qbox2rbox(polys[keep]) if keep else torch.zeros((0, 5))
        samples.append(dict(img_id=img_id, pred_instances=dict(
            bboxes=rboxes, scores=torch.ones(len(keep)),
            labels=torch.zeros(len(keep), dtype=torch.long))))
    return samples


@pytest.mark.needs_mmrotate
def test_merged_dota_metric_scores_full_scenes(tmp_path):
    import mmrotate  # noqa: F401  (registers the metric)
    from mmrotate.datasets import DOTADataset

    from rsvheat_mm.evaluation.merged_dota_metric import MergedDOTAMetric
    scene = make_dota_scene(str(tmp_path / 'dota'))
    split = tmp_path / 'split'
    dota_split.split_dota_dataset([str(tmp_path / 'dota' / 'images')],
                                  [str(tmp_path / 'dota' / 'labelTxt')], str(split),
                                  sizes=[128], gaps=[42])

    def score(samples, **kw):
        metric = MergedDOTAMetric(scene_ann_dir=str(tmp_path / 'dota' / 'labelTxt'), **kw)
        metric.dataset_meta = DOTADataset.METAINFO
        metric.process({}, samples)
        return metric.evaluate(len(samples))

    # every patch's copies merge into the 4 scene objects: perfect
    assert score(_patch_predictions(split))['dota/mAP'] == pytest.approx(1.0)
    # one plane missed everywhere: recall 3/4 caps the AP
    missed = score(_patch_predictions(split, [scene['objects'][0]['poly']]))['dota/mAP']
    assert 0.5 < missed < 0.9
    # without merging NMS the duplicates of overlapping patches are false positives
    dup = score(_patch_predictions(split), merge_iou_thr=1.0)['dota/mAP']
    assert dup < 1.0

    out = tmp_path / 'Task1'
    assert score(_patch_predictions(split), format_only=True, outfile_prefix=str(out)) == {}
    assert len(list(out.iterdir())) == 15  # one file per DOTA class, empty ones too
    task1 = fmt.read_dota_task1(str(out), DOTADataset.METAINFO['classes'])
    # merged, in scene coordinates: one box per plane, centred on it
    centres = sorted(np.array(d['poly']).reshape(4, 2).mean(0).tolist() for d in task1['P2805'])
    want = sorted(np.array(o['poly']).reshape(4, 2).mean(0).tolist() for o in scene['objects'])
    np.testing.assert_allclose(centres, want, atol=1.0)
    shutil.rmtree(out)
