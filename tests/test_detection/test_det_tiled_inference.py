"""Huge-scene detection: tile, detect, merge -- boxes in full-scene pixels.

Random-weight detectors give near-tied scores, so two numerical paths (a
batch of windows vs one window at a time) may legitimately keep different
boxes after NMS on another CPU kind. The tests therefore compare the engine
with a reference that runs the very same computation (one window per
forward, the same pipeline), and compare batched with unbatched inference
window by window, before any merging, by matching boxes.
"""
import json
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.structures import InstanceData

from rsvheat_mm.apis import inference_detector_tiled
from rsvheat_mm.apis.tiling import (DetectionMerger, WindowPipeline, WindowPlan,
                                    merge_window_detections)
from tests.helpers import DEMO_DATA, PYTHON, ROOT, run_tool
from tests.test_detection.fixtures import tiny_det_cfg

SCENE = osp.join(DEMO_DATA, 'dota_scene', 'dota_demo.jpg')  # 1616 x 1565
DIOR_CFG = osp.join(ROOT, 'configs', 'detection',
                    'faster-rcnn_rsvheat-b_fpn_8xb2-12e_dior-800x800.py')
DOTA_CFG = osp.join(ROOT, 'configs', 'rotated_detection',
                    'oriented-rcnn-le90_rsvheat-b_fpn_8xb2-12e_dota-1024.py')


def _sample(boxes, scores, labels):
    s = DetDataSample()
    s.pred_instances = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32),
                                    scores=torch.tensor(scores), labels=torch.tensor(labels))
    return s


@pytest.mark.parametrize('rotated', [False, True])
def test_merge_shifts_windows_and_removes_overlap_duplicates(rotated):
    # one object at scene x 70..90, y 10..30, seen by both windows
    windows = [(0, 0, 100, 100), (60, 0, 160, 100)]
    if rotated:
        a, b = [80, 20, 20, 20, 0.3], [20, 20, 20, 20, 0.3]
        other, other_w2 = [150, 50, 10, 10, 0.], [90, 50, 10, 10, 0.]
    else:
        a, b = [70, 10, 90, 30], [10, 10, 30, 30]
        other, other_w2 = [145, 45, 155, 55], [85, 45, 95, 55]
    results = [_sample([a], [0.9], [1]),
               # window 2 sees it at x - 60 (lower score), the same place with
               # another class, and one more object near its right border
               _sample([b, b, other_w2], [0.8, 0.7, 0.6], [1, 2, 1])]
    merged = merge_window_detections(results, windows, (100, 160), iou_thr=0.5)
    pred = merged.pred_instances
    assert merged.ori_shape == (100, 160)
    assert pred.labels.tolist() == [1, 2, 1]
    assert pred.scores.tolist() == pytest.approx([0.9, 0.7, 0.6])
    np.testing.assert_allclose(pred.bboxes[0], a)       # kept the better copy
    np.testing.assert_allclose(pred.bboxes[1], a, atol=1e-5)  # other class: shifted, not merged
    np.testing.assert_allclose(pred.bboxes[2], other, atol=1e-5)


def test_merger_drops_boxes_centred_on_nodata():
    nodata = np.zeros((100, 100), bool)
    nodata[:, :50] = True  # the left half of window 2 has no data
    merger = DetectionMerger((100, 160), iou_thr=0.5, score_thr=0.1)
    merger.add((0, 0, 100, 100), _sample([[10, 10, 20, 20]], [0.9], [0]))
    merger.add((60, 0, 160, 100), _sample([[10, 10, 30, 30], [70, 10, 90, 30],
                                           [60, 60, 70, 70]], [0.8, 0.7, 0.05], [0, 0, 0]),
               nodata)
    pred = merger.result().pred_instances
    assert merger.dropped_in_nodata == 1  # the 0.05 box is below score_thr anyway
    np.testing.assert_allclose(pred.bboxes, [[10, 10, 20, 20], [130, 10, 150, 30]])


def _tiny_model(config, scale):
    from mmdet.apis import init_detector
    cfg = tiny_det_cfg(Config.fromfile(config), '/tmp/unused', scale=scale)
    cfg.model.test_cfg.rcnn.score_thr = 0.0  # untrained: keep its guesses
    torch.manual_seed(0)
    return init_detector(cfg, None, device='cpu')


def _tensor(boxes):
    return getattr(boxes, 'tensor', boxes)  # mmdet/mmrotate BaseBoxes or a Tensor


def _match_rate(a, b):
    """Fraction of the boxes of ``a`` that ``b`` has too: same label, every
    coordinate within 1e-3 relative (mmcv's rotated IoU is unstable for nearly
    coincident boxes, so boxes are compared by their parameters)."""
    if not len(a.bboxes):
        return 1.0
    if not len(b.bboxes):
        return 0.0
    boxes_a, boxes_b = _tensor(a.bboxes).float(), _tensor(b.bboxes).float()
    diff = ((boxes_a[:, None] - boxes_b[None]).abs() / (1 + boxes_a[:, None].abs())).amax(-1)
    diff[a.labels[:, None] != b.labels[None]] = float('inf')
    return float((diff.amin(dim=1) < 1e-3).float().mean())


@pytest.mark.parametrize('config, dim', [
    (DIOR_CFG, 4), pytest.param(DOTA_CFG, 5, marks=pytest.mark.needs_mmrotate)
], ids=['mmdet-hbox', 'mmrotate-rbox'])
def test_tiled_inference_on_bundled_scene(config, dim, monkeypatch):
    model = _tiny_model(config, scale=128)
    img = mmcv.imread(SCENE)
    height, width = img.shape[:2]
    assert (height, width) == (1565, 1616)
    # record what the model returned for each window, before any merging
    seen = {}
    predict = WindowPipeline.predict

    def spy(self, *args, **kwargs):
        for pred in predict(self, *args, **kwargs):
            seen.setdefault(kwargs.get('batch_size', args[3]), []).append(pred.sample)
            yield pred
    monkeypatch.setattr(WindowPipeline, 'predict', spy)

    result = inference_detector_tiled(model, SCENE, tile=1024, overlap=200, batch_size=1)
    windows = list(WindowPlan(height, width, 1024, 200))
    assert result.windows == windows and len(windows) == 4
    assert result.ori_shape == (height, width) and result.img_path == SCENE
    boxes = result.pred_instances.bboxes
    assert boxes.shape[1] == dim and len(boxes) > 0
    # full-scene coordinates: inside the scene, and beyond any one window
    centres = (boxes[:, :2] + boxes[:, 2:4]) / 2 if dim == 4 else boxes[:, :2]
    assert (centres[:, 0] >= -1).all() and (centres[:, 0] <= width + 1).all()
    assert (centres[:, 1] >= -1).all() and (centres[:, 1] <= height + 1).all()
    assert centres[:, 0].max() > 1024 and centres[:, 1].max() > 1024

    # equal to detecting each window on its own (the same computation: one
    # window per forward), shifting and merging
    pipeline = WindowPipeline(model.cfg)
    per_window = []
    for x0, y0, x1, y1 in windows:
        reader = pipeline.reader(np.ascontiguousarray(img[y0:y1, x0:x1]))
        data = pipeline(pipeline.results(reader.read(), reader))
        with torch.no_grad():
            per_window += model.test_step(pseudo_collate([data]))
    for mine, ref in zip(seen[1], per_window):
        torch.testing.assert_close(_tensor(mine.pred_instances.bboxes),
                                   _tensor(ref.pred_instances.bboxes))
    iou = 0.5 if dim == 4 else 0.1  # the detectors' own final NMS IoU
    expected = merge_window_detections(per_window, windows, (height, width), iou)
    assert len(expected.pred_instances) == len(result.pred_instances)
    torch.testing.assert_close(result.pred_instances.bboxes, expected.pred_instances.bboxes)
    # boxes found in the last window, shifted by its offset, survive in the result
    x0, y0 = windows[-1][:2]
    last = per_window[-1].pred_instances
    top = _tensor(last.bboxes)[last.scores.argmax()].clone()
    top[:2] += torch.tensor([x0, y0], dtype=top.dtype)
    if dim == 4:
        top[2:] += torch.tensor([x0, y0], dtype=top.dtype)
    assert (result.pred_instances.bboxes - top).abs().max(1).values.min() < 1e-2

    # batched windows: other kernels, so compare each window's raw boxes by matching
    # (near-tied random scores may flip a few boxes in the detector's own NMS)
    batched = inference_detector_tiled(model, SCENE, tile=1024, overlap=200, batch_size=2)
    assert batched.windows == windows
    for mine, ref in zip(seen[2], seen[1]):
        assert _match_rate(mine.pred_instances, ref.pred_instances) > 0.9
        assert _match_rate(ref.pred_instances, mine.pred_instances) > 0.9


def test_infer_cli_on_a_scene_with_a_checkpoint(tmp_path):
    """tools/infer.py on the DOTA scene, tiled, with a saved tiny checkpoint: the
    boxes it writes are those of the seeded model's API call."""
    cfg = tiny_det_cfg(Config.fromfile(DIOR_CFG), tmp_path, scale=128)
    cfg.model.test_cfg.rcnn.score_thr = 0.0
    cfg_path = str(tmp_path / 'tiny_dior.py')
    cfg.dump(cfg_path)
    from mmdet.apis import init_detector
    torch.manual_seed(0)
    model = init_detector(cfg, None, device='cpu')
    ckpt = str(tmp_path / 'tiny.pth')
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(classes=list(model.dataset_meta['classes'])))),
               ckpt)
    out = run_tool([PYTHON, 'tools/infer.py', cfg_path, SCENE, '--weights', ckpt, '--tile',
                    '1024', '--overlap', '200', '--score-thr', '0.01', '--out-dir',
                    str(tmp_path / 'out'), '--device', 'cpu'], OMP_NUM_THREADS=1)
    with open(tmp_path / 'out' / 'preds' / 'dota_demo.json') as f:
        rec = json.load(f)
    assert f'dota_demo: {len(rec["bboxes"])} detections >= 0.01' in out
    assert rec['num_windows'] == 4 and rec['tile'] == [1024, 1024] and rec['box_type'] == 'hbox'
    assert rec['bboxes'] and all(s >= 0.01 for s in rec['scores'])
    assert set(rec['classes']) <= set(model.dataset_meta['classes'])
    assert max(b[2] for b in rec['bboxes']) > 1024
    ref = inference_detector_tiled(model, SCENE, tile=1024, overlap=200)
    keep = ref.pred_instances.scores >= 0.01
    assert len(rec['bboxes']) == int(keep.sum())
    np.testing.assert_allclose(rec['bboxes'], ref.pred_instances.bboxes[keep].numpy(),
                               atol=0.01)
    vis = mmcv.imread(str(tmp_path / 'out' / 'vis' / 'dota_demo.jpg'))
    assert vis.shape[:2] == (1565, 1616)


def test_geotiff_scene_read_by_window_matches_jpeg(tmp_path):
    """A georeferenced GeoTIFF of the scene (RGB bands, UTM transform) gives
    the detections of the JPEG, and the scene's georeferencing."""
    from rsvheat_mm.apis.geo_io import detections_to_geojson, write_geotiff
    img = mmcv.imread(SCENE)
    crs = ('PROJCS["WGS 84 / UTM zone 50N",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID['
           '"WGS 84",6378137,298.257223563]],PRIMEM["Greenwich",0],UNIT["degree",'
           '0.0174532925199433]],PROJECTION["Transverse_Mercator"],PARAMETER['
           '"latitude_of_origin",0],PARAMETER["central_meridian",117],PARAMETER['
           '"scale_factor",0.9996],PARAMETER["false_easting",500000],PARAMETER['
           '"false_northing",0],UNIT["metre",1],AUTHORITY["EPSG","32650"]]')
    geo = dict(crs=crs, transform=(0.5, 0.0, 440000.0, 0.0, -0.5, 4420000.0))
    tif = str(tmp_path / 'scene.tif')
    write_geotiff(tif, mmcv.bgr2rgb(img).transpose(2, 0, 1).copy(), geo)
    model = _tiny_model(DIOR_CFG, scale=128)
    from_tif = inference_detector_tiled(model, tif, tile=1024, overlap=200)
    from_jpg = inference_detector_tiled(model, img, tile=1024, overlap=200)
    torch.testing.assert_close(from_tif.pred_instances.bboxes, from_jpg.pred_instances.bboxes)
    assert from_tif.geo['transform'] == pytest.approx(geo['transform'])
    fc = detections_to_geojson(from_tif.pred_instances.bboxes.numpy(),
                               from_tif.pred_instances.scores.numpy(),
                               from_tif.pred_instances.labels.numpy(), geo=from_tif.geo)
    x1, y1 = from_tif.pred_instances.bboxes[0, :2].tolist()
    ring = fc['features'][0]['geometry']['coordinates'][0]
    assert min(p[0] for p in ring) == pytest.approx(440000.0 + 0.5 * x1, abs=1e-3)
    assert max(p[1] for p in ring) == pytest.approx(4420000.0 - 0.5 * y1, abs=1e-3)
