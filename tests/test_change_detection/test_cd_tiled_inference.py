"""Huge-pair change detection through the tiled-scene engine.

A co-registered pair is a two-image scene: read window by window (GeoTIFFs)
or decoded once (PNGs), blended strip by strip and streamed to a GeoTIFF.
Oracles: a fake change predictor blended over the whole scene at once, and
the config's own validation path (test pipeline + ``test_step``) for a scene
covered by one window.
"""
import os
import os.path as osp

import mmcv
import numpy as np
import pytest
import rasterio
import torch
from mmengine.config import Config

from rsvheat_mm.apis import inference_segmentor_tiled
from rsvheat_mm.apis.geo_io import write_geotiff
from rsvheat_mm.apis.tiling import WindowPlan, blend_weights
from rsvheat_mm.datasets.planted_changes import load_objects, plant_changes, read_rgb
from tests.helpers import DEMO_DATA, PYTHON, ROOT, run_tool

DEMO = osp.join(ROOT, 'configs/demo/siam-upernet_rsvheat-demo_1xb4-100iter_planted-cd-128x128.py')


@pytest.fixture(scope='module')
def huge_pair(tmp_path_factory):
    """A non-square pair cut from the DOTA scene with planted changes, as GeoTIFFs
    (RGB in the file) and PNGs."""
    from rasterio.transform import from_origin
    root = tmp_path_factory.mktemp('huge')
    scene = read_rgb(osp.join(DEMO_DATA, 'dota_scene/dota_demo.jpg'))[300:820, 200:800]
    texture = read_rgb(osp.join(DEMO_DATA, 'loveda/img_dir/2.png'))
    a, b, label, _ = plant_changes(scene, load_objects(['loveda1']), [texture],
                                   np.random.default_rng(3), swap_prob=0.)
    transform = from_origin(500000.0, 4200000.0, 0.5, 0.5)
    for name, img in (('A', a), ('B', b)):
        write_geotiff(str(root / f'{name}.tif'), img[..., ::-1].transpose(2, 0, 1),  # RGB
                      dict(crs='EPSG:32650', transform=tuple(transform)))
        mmcv.imwrite(img, str(root / f'{name}.png'))
    for name, img in (('A', a), ('B', b)):
        mmcv.imwrite(img[100:300, 140:400], str(root / f'small_{name}.png'))
    return dict(root=root, a=a, b=b, label=label, transform=transform)


@pytest.fixture(scope='module')
def cd_model():
    """The demo change detector with random (seeded) weights."""
    from mmseg.apis import init_model

    import rsvheat_mm  # noqa: F401
    torch.manual_seed(0)
    model = init_model(Config.fromfile(DEMO), None, device='cpu')
    model.init_weights()
    return model.eval()


class FakeChangeDetector:
    """Stands in for the network: a change probability that depends on the pair
    and on the position inside the window, so overlapping windows disagree
    and the blending is visible. Sigmoid-style one-channel output, as mmseg
    stores it after ``postprocess_result``."""

    def __init__(self, cfg):
        self.cfg = cfg

    @staticmethod
    def prob(pair_hwc: np.ndarray) -> np.ndarray:
        pair = pair_hwc.astype(np.float64)
        h, w = pair.shape[:2]
        diff = np.abs(pair[..., :3] - pair[..., 3:]).mean(axis=2) / 16
        u = np.linspace(0, 2 * np.pi, w)[None]
        return ((1 - np.exp(-diff)) * (0.75 + 0.25 * np.cos(u))
                * np.ones((h, 1))).astype(np.float32)

    def test_step(self, data):
        from mmengine.structures import PixelData
        out = []
        for img, sample in zip(data['inputs'], data['data_samples']):
            p = self.prob(img.permute(1, 2, 0).numpy())
            sample.seg_logits = PixelData(data=torch.from_numpy(p)[None])
            out.append(sample)
        return out


@pytest.mark.parametrize('blend', ['mean', 'gaussian'])
def test_tiled_blending_strip_by_strip_equals_whole_scene(huge_pair, tmp_path, blend):
    root = huge_pair['root']
    tile, overlap = (96, 160), (40, 24)
    probs = []
    from rsvheat_mm.apis import tiling
    fake = FakeChangeDetector(Config.fromfile(DEMO))
    pipeline = tiling.WindowPipeline(fake.cfg)
    reader = pipeline.reader((str(root / 'A.tif'), str(root / 'B.tif')))
    # GeoTIFF windows come as BGR, like the PNG path and the training loader
    np.testing.assert_array_equal(reader.read((5, 7, 105, 57)).img[..., 3:],
                                  huge_pair['b'][7:57, 5:105])
    plan = WindowPlan(reader.height, reader.width, tile, overlap)
    writer = tiling.MaskWriter(520, 600, str(tmp_path / 'change.tif'), reader.geo, keep=True)
    stats = tiling.run_dense(fake, pipeline, reader, plan, writer, batch_size=4, blend=blend,
                             on_patch=probs.append)
    assert stats['num_windows'] == len(plan) == 9 * 5 and stats['nodata_pixels'] == 0
    # reference: accumulate over the whole scene at once
    pair = np.concatenate([huge_pair['a'], huge_pair['b']], axis=2)
    acc, wsum = np.zeros((520, 600)), np.zeros((520, 600))
    for x0, y0, x1, y1 in plan:
        weight = blend_weights(y1 - y0, x1 - x0, blend)
        acc[y0:y1, x0:x1] += FakeChangeDetector.prob(pair[y0:y1, x0:x1]) * weight
        wsum[y0:y1, x0:x1] += weight
    ref = acc / wsum
    assert 0.05 < (ref > 0.5).mean() < 0.95
    blended = np.full((520, 600), np.nan)
    for patch in probs:
        h, w = patch.probs.shape[1:]
        blended[patch.y0:patch.y0 + h, patch.x0:patch.x0 + w] = patch.probs[1]
    np.testing.assert_allclose(blended, ref, atol=1e-5)
    clear = np.abs(ref - 0.5) > 1e-5  # float32 vs float64 sums: leave near-ties out
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(writer.mask[clear], (ref > 0.5)[clear])
    with rasterio.open(tmp_path / 'change.tif') as src:  # georeferenced like date A
        assert src.crs.to_epsg() == 32650 and src.transform == huge_pair['transform']
        np.testing.assert_array_equal(src.read(1), writer.mask)
        assert src.nodata == 255
    assert sorted(os.listdir(tmp_path)) == ['change.tif']  # no temp files left
    # the same pixels as PNGs (decoded once) give the same map
    png = inference_segmentor_tiled(fake, (str(root / 'A.png'), str(root / 'B.png')),
                                    tile=tile, overlap=overlap, blend=blend)
    np.testing.assert_array_equal(png['mask'], writer.mask)


def test_single_window_equals_the_validation_path(cd_model, huge_pair):
    """One tile covering the scene = the config's test pipeline + test_step."""
    from mmcv.transforms import Compose
    from mmengine.dataset import pseudo_collate
    root = huge_pair['root']
    out = inference_segmentor_tiled(cd_model, (str(root / 'small_A.png'),
                                               str(root / 'small_B.png')),
                                    tile=1024, overlap=0)
    assert out['num_windows'] == 1 and out['mask'].shape == (200, 260)
    pipeline = [t for t in cd_model.cfg.test_dataloader.dataset.pipeline
                if t['type'] != 'LoadBitemporalChangeLabel']
    item = Compose(pipeline)(dict(img_path=str(root / 'small_A.png'),
                                  img_path2=str(root / 'small_B.png'), seg_fields=[]))
    with torch.no_grad():
        pred = cd_model.test_step(pseudo_collate([item]))[0].pred_sem_seg.data[0].numpy()
    # softmax-argmax vs logit-argmax: a float tie may flip a rare pixel
    assert np.mean(out['mask'] != pred) < 1e-4 and len(np.unique(pred)) == 2


def test_infer_cli_on_a_pair(cd_model, huge_pair, tmp_path):
    """tools/infer.py on a PNG pair, tiled: the written map is the API's."""
    from mmengine.runner import save_checkpoint
    root = huge_pair['root']
    ckpt = str(tmp_path / 'cd.pth')
    save_checkpoint({'state_dict': cd_model.state_dict()}, ckpt)
    a, b = str(root / 'small_A.png'), str(root / 'small_B.png')
    out = run_tool([PYTHON, 'tools/infer.py', DEMO, a, b, '--weights', ckpt, '--tile', '128',
                    '160', '--overlap', '32', '--batch-size', '2', '--out-dir',
                    str(tmp_path / 'out'), '--device', 'cpu'], OMP_NUM_THREADS=1)
    assert '[change_detection] small_A:' in out
    written = mmcv.imread(str(tmp_path / 'out' / 'preds' / 'small_A.png'), 'unchanged')
    ref = inference_segmentor_tiled(cd_model, (a, b), tile=(128, 160), overlap=32,
                                    batch_size=2)
    assert ref['num_windows'] == 4
    np.testing.assert_array_equal(written, ref['mask'])
    assert mmcv.imread(str(tmp_path / 'out' / 'vis' / 'small_A.jpg')).shape[:2] == (200, 520)
    # dates of different sizes are refused, naming both files
    small = tmp_path / 'small_B.tif'
    write_geotiff(str(small), huge_pair['b'][100:300, 140:400].transpose(2, 0, 1),
                  dict(crs='EPSG:32650', transform=tuple(huge_pair['transform'])))
    with pytest.raises(ValueError, match=r'A\.tif is 600x520 px, .*small_B\.tif is 260x200'):
        inference_segmentor_tiled(cd_model, (str(root / 'A.tif'), str(small)), tile=128)
