"""RSVHeatInferencer and tools/infer.py on every task's demo config.

Models keep their random initialisation (no trained weights are bundled):
the tests check what the API guarantees -- shapes, georeferencing, nodata,
file outputs, tiling equivalences, equal results for equal pixels in
different file formats -- not accuracy.
"""
import copy
import json
import os
import os.path as osp
import warnings

import cv2
import numpy as np
import pytest
import rasterio
import torch

from rsvheat_mm.apis import RSVHeatInferencer, task_of_config
from tests.helpers import DEMO_DATA, ROOT
from tests.test_practical.conftest import (CD_DEMO, CLS_DEMO, DET_DEMO, MULTISPECTRAL,
                                           ROT_DEMO, SEG_DEMO, UTM_TRANSFORM, loveda_rgb,
                                           write_geotiff)


def _inferencer(cfg, **kwargs):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "weights not loaded" is expected here
        inferencer = RSVHeatInferencer(cfg, device='cpu', show_progress=False, **kwargs)
    inferencer.model.init_weights()
    return inferencer


def _raster(path):
    with rasterio.open(path) as src:
        return src.read(1), src.crs, tuple(src.transform)[:6], src.nodata


@pytest.mark.parametrize('path, task', [
    (CLS_DEMO, 'classification'), (SEG_DEMO, 'segmentation'), (DET_DEMO, 'detection'),
    pytest.param(ROT_DEMO, 'rotated_detection', marks=pytest.mark.needs_mmrotate),
    (CD_DEMO, 'change_detection')])
def test_task_of_config(path, task):
    from mmengine.config import Config
    assert task_of_config(Config.fromfile(path)) == task


def test_task_of_pretraining_config_is_refused():
    from mmengine.config import Config
    pretrain = osp.join(ROOT, 'configs', 'demo',
                        'rsvheat-pretrain_rsvheat-demo_1xb4-40iter_scenes-sarstandin-64px.py')
    with pytest.raises(ValueError, match='makes no predictions'):
        task_of_config(Config.fromfile(pretrain))


def test_segmentation_multispectral_uint16_geotiff(seg_cfg_small, multispectral_nodata, tmp_path):
    """5-band uint16 rasters through a 5-band segmentation model; the mask keeps CRS and
    transform, nodata pixels are 255."""
    cfg = copy.deepcopy(seg_cfg_small)
    cfg.model.backbone.in_channels = dict(ms=5)
    cfg.model.backbone.pretrain_img_size = 64
    cfg.model.data_preprocessor.update(mean=[0.5] * 5, std=[0.25] * 5, bgr_to_rgb=False)
    cfg.test_dataloader.dataset.pipeline = [
        dict(type='LoadGeoRasterFromFile',
             norm=dict(type='range', min=0, max=2000, out_range=(0, 1))),
        dict(type='PackSegInputs')]
    inferencer = _inferencer(cfg)
    seen = []
    inferencer.model.backbone.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape))
    nodata_path, arr = multispectral_nodata
    out = tmp_path / 'out'
    result = inferencer([MULTISPECTRAL, nodata_path], out_dir=str(out), batch_size=2)
    assert seen == [torch.Size([2, 5, 200, 150])]  # all 5 bands reach the ms stem
    with rasterio.open(MULTISPECTRAL) as src:
        crs, transform = src.crs, tuple(src.transform)[:6]
    nodata = np.all(arr == 0, axis=2)
    for record, has_nodata in zip(result['predictions'], (False, True)):
        mask, out_crs, out_transform, out_nodata = _raster(record['files']['mask'])
        assert record['files']['mask'].endswith('.tif')
        assert out_crs == crs and out_transform == pytest.approx(transform)
        assert out_nodata == 255 and mask.shape == (200, 150)
        np.testing.assert_array_equal(mask, record['sem_seg'])
        if has_nodata:
            assert (mask[nodata] == 255).all() and (mask[~nodata] < 7).all()
        else:
            assert (mask < 7).all()
        assert osp.isfile(record['files']['vis'])
    assert sorted(os.listdir(out / 'preds')) == ['ms_nodata.tif', 'uint16-5channel.tif']


def test_segmentation_georeferenced_whole_and_tiled(seg_inferencer, loveda_geotiff, tmp_path):
    path, rgb = loveda_geotiff
    nodata = np.all(rgb == 0, axis=2)
    assert nodata[:, :40].all()
    whole = seg_inferencer(path, out_dir=str(tmp_path / 'whole'), no_save_vis=True)
    single = seg_inferencer(path, out_dir=str(tmp_path / 'single'), tile=(320, 384),
                            no_save_vis=True)
    tiled = seg_inferencer(path, out_dir=str(tmp_path / 'tiled'), tile=192, overlap=48)
    masks = {}
    for name, res in (('whole', whole), ('single', single), ('tiled', tiled)):
        rec = res['predictions'][0]
        mask, crs, transform, nd = _raster(rec['files']['mask'])
        assert crs.to_epsg() == 32650 and transform == pytest.approx(UTM_TRANSFORM), name
        assert nd == 255
        assert (mask[nodata] == 255).all() and (mask[~nodata] < 7).all(), name
        counts = np.bincount(mask.ravel(), minlength=256)
        assert rec['class_pixels']['nodata'] == nodata.sum() == counts[255]
        assert sum(rec['class_pixels'].values()) == mask.size
        masks[name] = mask
    np.testing.assert_array_equal(masks['whole'], whole['predictions'][0]['sem_seg'])
    # a tiled scene written to a file is not also kept in memory; without a
    # file, the record holds the mask
    assert tiled['predictions'][0]['sem_seg'] is None
    kept = seg_inferencer(path, tile=192, overlap=48)['predictions'][0]
    np.testing.assert_array_equal(kept['sem_seg'], masks['tiled'])
    # one window covering the scene is whole-image inference (argmax of softmax
    # probabilities vs of logits: float ties may flip a rare pixel)
    assert np.mean(masks['single'] != masks['whole']) < 1e-4
    assert tiled['predictions'][0]['num_windows'] == 6
    with rasterio.open(tiled['predictions'][0]['files']['mask']) as src:
        assert src.colormap(1)[0][:3] == tuple(seg_inferencer.dataset_meta['palette'][0])
    assert cv2.imread(tiled['predictions'][0]['files']['vis']).shape[:2] == (320, 384)


def test_tiled_scene_is_drawn_on_a_preview(seg_inferencer, loveda_geotiff, tmp_path,
                                           monkeypatch):
    """Scenes larger than preview_side are drawn at that size, from a decimated read."""
    path, _ = loveda_geotiff
    monkeypatch.setattr(seg_inferencer, 'preview_side', 96)
    rec = seg_inferencer(path, out_dir=str(tmp_path), tile=192, overlap=48)['predictions'][0]
    assert cv2.imread(rec['files']['vis']).shape[:2] == (80, 96)
    assert _raster(rec['files']['mask'])[0].shape == (320, 384)


def test_nan_pixels_are_nodata_without_a_tag(float_nan_geotiff, geo_dir, tmp_path, capsys):
    """A float GeoTIFF with a NaN block and no nodata tag (issue: the NaN region was
    classified like everything else): NaN pixels are filled before the model,
    255 in the mask (GeoTIFF nodata tag set), counted in the record and printed
    by tools/infer.py -- whole and tiled. The filled scene predicts what the same
    scene with the block tagged as nodata predicts."""
    from tests.test_practical.conftest import NAN_BLOCK
    from tools.infer import main
    path, arr = float_nan_geotiff
    tagged = arr.copy()
    tagged[NAN_BLOCK] = -1
    tagged_path = write_geotiff(geo_dir / 'ms_float_tagged.tif', tagged, 'EPSG:4326',
                                (1e-5, 0, 0, 0, -1e-5, 0), nodata=-1)
    block = np.zeros(arr.shape[:2], bool)
    block[NAN_BLOCK] = True
    common = ['--bands', '2', '1', '0', '--norm-range', '0', '0.2', '--device', 'cpu',
              '--no-save-vis']
    for tile in ([], ['--tile', '128', '96', '--overlap', '32']):
        capsys.readouterr()
        torch.manual_seed(0)
        nan_rec = main([SEG_DEMO, path, '--out-dir', str(tmp_path / 'nan')] + common + tile)[0]
        printed = capsys.readouterr().out
        assert '2400 NaN/Inf pixels treated as nodata' in printed
        assert nan_rec['nonfinite_pixels'] == 2400
        mask, _, _, nodata = _raster(nan_rec['files']['mask'])
        assert nodata == 255 and (mask[block] == 255).all() and (mask[~block] < 7).all()
        torch.manual_seed(0)
        tag_rec = main([SEG_DEMO, tagged_path, '--out-dir', str(tmp_path / 'tag')]
                       + common + tile)[0]
        assert 'nonfinite_pixels' not in tag_rec
        np.testing.assert_array_equal(_raster(tag_rec['files']['mask'])[0], mask)


def test_detections_on_nan_pixels_are_dropped(tmp_path):
    """The DIOR image as a float GeoTIFF with a NaN block: the detections are those
    of the same pixels with the block filled with 0, less the boxes centred in it."""
    inferencer = _inferencer(DET_DEMO, cfg_options={'model.test_cfg.rcnn.score_thr': 0.0},
                             raster_loader=dict(norm=dict(type='range', min=0, max=1)))
    rgb = cv2.imread(osp.join(DEMO_DATA, 'dior', 'JPEGImages', '00001.jpg'))[..., ::-1]
    rgb = rgb.astype(np.float32) / 255
    filled = rgb.copy()
    filled[200:500, 100:600] = 0
    nan = rgb.copy()
    nan[200:500, 100:600] = np.nan
    paths = [write_geotiff(tmp_path / f'{n}.tif', a, 'EPSG:32650', UTM_TRANSFORM)
             for n, a in (('filled', filled), ('nan', nan))]
    rec_filled, rec_nan = inferencer(paths, pred_score_thr=0.)['predictions']
    boxes = np.array(rec_filled['bboxes'])
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    inside = (np.floor(cx) >= 100) & (np.floor(cx) < 600) & (np.floor(cy) >= 200) & \
        (np.floor(cy) < 500)
    assert inside.any() and (~inside).any()
    assert rec_nan['nonfinite_pixels'] == 300 * 500
    assert rec_nan['bboxes'] == boxes[~inside].tolist()
    assert rec_nan['scores'] == np.array(rec_filled['scores'])[~inside].tolist()


def test_cli_rgb_model_on_multispectral_geotiff(tmp_path):
    """tools/infer.py: the 3-band demo UperNet on bands 2, 1, 0 of the bundled 5-band
    uint16 GeoTIFF, stretched to 0-255 -- whole and tiled; masks keep CRS/transform."""
    from tools.infer import main
    common = [SEG_DEMO, MULTISPECTRAL, '--bands', '2', '1', '0', '--norm-range', '0', '2000',
              '--device', 'cpu']
    whole = main(common + ['--out-dir', str(tmp_path / 'whole')])[0]
    tiled = main(common + ['--out-dir', str(tmp_path / 'tiled'), '--tile', '128', '96',
                           '--overlap', '32'])[0]
    with rasterio.open(MULTISPECTRAL) as src:
        crs, transform = src.crs, tuple(src.transform)[:6]
    for rec in (whole, tiled):
        mask, out_crs, out_transform, _ = _raster(rec['files']['mask'])
        assert out_crs == crs and out_transform == pytest.approx(transform)
        assert mask.shape == (200, 150) and (mask < 7).all()
        assert cv2.imread(rec['files']['vis']).shape[:2] == (200, 150)
    assert tiled['num_windows'] == 4
    with pytest.raises(ValueError, match='has 5 bands; color_type="color" needs 1 or 3'):
        main([SEG_DEMO, MULTISPECTRAL, '--device', 'cpu', '--no-save-vis'])


def test_classification_cli_on_folder(tmp_path):
    from tools.infer import main
    scenes = osp.join(DEMO_DATA, 'scenes')
    records = main([CLS_DEMO, scenes, '--out-dir', str(tmp_path), '--batch-size', '4',
                    '--device', 'cpu'])
    assert [r['name'] for r in records] == [str(i) for i in range(1, 9)]
    classes = ('airport', 'baseball_diamond', 'harbor', 'tennis_court')
    for r in records:
        assert r['pred_class'] == classes[r['pred_label']]
        assert sum(r['pred_scores']) == pytest.approx(1, abs=1e-4)
        with open(r['files']['json']) as f:
            assert json.load(f)['pred_label'] == r['pred_label']
        assert cv2.imread(r['files']['vis']) is not None
    assert len(os.listdir(tmp_path / 'preds')) == 8


def test_classification_tiled_grid(tmp_path):
    inferencer = _inferencer(CLS_DEMO)
    rgb = loveda_rgb('1.png', (0, 0, 448, 448))
    path = write_geotiff(tmp_path / 'scene.tif', rgb, 'EPSG:32650', UTM_TRANSFORM)
    rec = inferencer(path, out_dir=str(tmp_path / 'out'), tile=224)['predictions'][0]
    assert [w['window'] for w in rec['windows']] == [
        [0, 0, 224, 224], [224, 0, 448, 224], [0, 224, 224, 448], [224, 224, 448, 448]]
    with open(rec['files']['geojson']) as f:
        fc = json.load(f)
    assert len(fc['features']) == 4
    ring = np.array(fc['features'][3]['geometry']['coordinates'][0])
    assert ring[:, 0].min() == pytest.approx(310000 + 224 * 0.3)
    assert ring[:, 1].max() == pytest.approx(3500000 - 224 * 0.3)


def test_detection_jpeg_and_geotiff_agree(tmp_path):
    """The DIOR image as JPEG and as a GeoTIFF of the same pixels give the same boxes;
    the GeoTIFF's boxes also come as GeoJSON in its CRS."""
    inferencer = _inferencer(DET_DEMO)
    jpg = osp.join(DEMO_DATA, 'dior', 'JPEGImages', '00001.jpg')
    rgb = cv2.imread(jpg)[..., ::-1].copy()
    tif = write_geotiff(tmp_path / 'dior.tif', rgb, 'EPSG:32650', UTM_TRANSFORM)
    res = inferencer([jpg, tif], out_dir=str(tmp_path / 'out'), pred_score_thr=0.01)
    rec_jpg, rec_tif = res['predictions']
    assert rec_jpg['box_type'] == 'hbox' and rec_jpg['bboxes']
    assert rec_jpg['bboxes'] == rec_tif['bboxes'] and rec_jpg['labels'] == rec_tif['labels']
    boxes = np.array(rec_jpg['bboxes'])
    assert (boxes >= -1).all() and (boxes <= 801).all()
    assert 'geojson' not in rec_jpg['files']
    with open(rec_tif['files']['geojson']) as f:
        fc = json.load(f)
    assert fc['crs']['properties']['name'] == 'urn:ogc:def:crs:EPSG::32650'
    assert len(fc['features']) == len(rec_tif['bboxes'])
    x1, y1, x2, y2 = rec_tif['bboxes'][0]
    ring = np.array(fc['features'][0]['geometry']['coordinates'][0])
    assert ring[:, 0].min() == pytest.approx(310000 + 0.3 * x1, abs=1e-6)
    assert ring[:, 1].min() == pytest.approx(3500000 - 0.3 * y2, abs=1e-6)
    assert fc['features'][0]['properties']['class'] == rec_tif['classes'][0]


@pytest.mark.needs_mmrotate
def test_rotated_detection_tiled_scene(tmp_path):
    # fewer proposals and boxes per window: random-weight boxes are many and slow to draw
    inferencer = _inferencer(ROT_DEMO, cfg_options={'model.test_cfg.rcnn.max_per_img': 20,
                                                    'model.test_cfg.rpn.max_per_img': 50})
    scene = osp.join(DEMO_DATA, 'dota_scene', 'dota_demo.jpg')
    rec = inferencer(scene, out_dir=str(tmp_path), tile=1024, overlap=200,
                     pred_score_thr=0.0)['predictions'][0]
    assert rec['box_type'] == 'rbox' and rec['num_windows'] == 4
    boxes = np.array(rec['bboxes']).reshape(-1, 5)
    assert 0 < len(boxes) <= 80
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 0] <= 1616).all()
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 1] <= 1565).all()
    assert cv2.imread(rec['files']['vis']).shape[:2] == (1565, 1616)


def test_change_detection_pairs(tmp_path):
    inferencer = _inferencer(CD_DEMO)
    a = loveda_rgb('0.png', (0, 0, 192, 192))
    b = loveda_rgb('0.png', (0, 0, 192, 192))
    b[48:112, 64:128] = loveda_rgb('2.png', (0, 0, 64, 64))  # a planted change
    pa, pb = str(tmp_path / 'a.png'), str(tmp_path / 'b.png')
    cv2.imwrite(pa, a[..., ::-1])
    cv2.imwrite(pb, b[..., ::-1])
    ta = write_geotiff(tmp_path / 'a.tif', a, 'EPSG:32650', UTM_TRANSFORM)
    tb = write_geotiff(tmp_path / 'b.tif', b, 'EPSG:32650', UTM_TRANSFORM)
    png = inferencer((pa, pb), out_dir=str(tmp_path / 'png'))['predictions'][0]
    tif = inferencer((ta, tb), out_dir=str(tmp_path / 'tif'), no_save_vis=True)['predictions'][0]
    tiled = inferencer((ta, tb), out_dir=str(tmp_path / 'tiled'), tile=128, overlap=32)
    tiled = tiled['predictions'][0]
    assert png['input'] == [pa, pb] and set(np.unique(png['sem_seg'])) <= {0, 1}
    np.testing.assert_array_equal(png['sem_seg'], tif['sem_seg'])  # same pixels, same map
    assert png['files']['mask'].endswith('.png')
    assert cv2.imread(png['files']['vis']).shape[:2] == (192, 384)  # date A | date B + change
    assert cv2.imread(tiled['files']['vis']).shape[:2] == (192, 384)
    for rec in (tif, tiled):
        mask, crs, transform, _ = _raster(rec['files']['mask'])
        assert crs.to_epsg() == 32650 and transform == pytest.approx(UTM_TRANSFORM)
        assert set(np.unique(mask)) <= {0, 1}
    np.testing.assert_array_equal(_raster(tif['files']['mask'])[0], tif['sem_seg'])
    assert tiled['num_windows'] == 4 and tiled['input'] == [ta, tb]
    # NaN in date B (no nodata tag): nodata in the change map, and counted
    b_nan = b.astype(np.float32)
    b_nan[:20, :30] = np.nan
    tn = write_geotiff(tmp_path / 'b_nan.tif', b_nan, 'EPSG:32650', UTM_TRANSFORM)
    rec = inferencer((ta, tn), tile=128, overlap=32)['predictions'][0]
    assert rec['nonfinite_pixels'] == 600 and (rec['sem_seg'][:20, :30] == 255).all()
    assert rec['class_pixels']['nodata'] == 600
    # a folder with A/ and B/
    for d, img in (('A', a), ('B', b)):
        os.makedirs(tmp_path / 'pairs' / d)
        cv2.imwrite(str(tmp_path / 'pairs' / d / 'p1.png'), img[..., ::-1])
    rec = inferencer(str(tmp_path / 'pairs'), no_save_vis=True)['predictions'][0]
    np.testing.assert_array_equal(rec['sem_seg'], png['sem_seg'])


def test_model_index_name_and_errors(tmp_path):
    from rsvheat_mm.apis.inferencers import ClassificationInferencer, SegmentationInferencer
    names = RSVHeatInferencer.list_models()
    assert 'upernet_rsvheat-b_8xb2-80k_potsdam-512x512' in names
    inferencer = _inferencer('rsvheat-demo_1xb4-24iter_scenes-cls-224px')
    assert inferencer.task == 'classification'
    # the task's inferencer, which counts as an RSVHeatInferencer
    assert isinstance(inferencer, ClassificationInferencer)
    assert isinstance(inferencer, RSVHeatInferencer)
    with pytest.raises(ValueError, match='runs segmentation models; this config is a '
                                         'classification model'):
        SegmentationInferencer(CLS_DEMO, device='cpu')
    with pytest.raises(ValueError, match='neither a config file nor a model'):
        RSVHeatInferencer('no-such-model')
    with pytest.raises(FileNotFoundError, match='input image not found: .*nope.png'):
        inferencer(str(tmp_path / 'nope.png'))


def test_weights_and_config_from_checkpoint(tmp_path):
    """A checkpoint as the Runner saves it (state_dict + meta with dataset_meta and the
    config text) loads through the safe loader: same predictions, its class names; with
    model=None the config comes from the checkpoint."""
    from mmengine.config import Config
    from mmengine.runner.checkpoint import save_checkpoint
    first = _inferencer(CLS_DEMO)
    scene = osp.join(DEMO_DATA, 'scenes', '5.png')
    ref = first(scene)['predictions'][0]
    classes = ['A', 'B', 'C', 'D']
    ckpt = str(tmp_path / 'iter_24.pth')
    save_checkpoint({'state_dict': first.model.state_dict(),
                     'meta': {'dataset_meta': {'classes': classes},
                              'cfg': Config.fromfile(CLS_DEMO).pretty_text}}, ckpt)
    for model in (CLS_DEMO, None):
        inferencer = RSVHeatInferencer(model, weights=ckpt, device='cpu', show_progress=False)
        rec = inferencer(scene)['predictions'][0]
        assert rec['pred_scores'] == pytest.approx(ref['pred_scores'], abs=1e-6)
        assert rec['pred_class'] == classes[ref['pred_label']]
