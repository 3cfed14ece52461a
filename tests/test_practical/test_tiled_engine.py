"""The tiled-scene engine (rsvheat_mm.apis.tiling): plan, reader, blender, writer, loops.

Oracles: whole-scene accumulation of the same window probabilities
(blending), slices of full reads (windowed reading), a fake segmentor whose
output depends on the pixels and on the position inside the window, so
overlapping windows disagree and the blend is visible (tiled segmentation).
The memory test runs tools/infer.py on scenes of two sizes in subprocesses
and compares their peak RSS.
"""
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import torch
from mmengine.config import Config

from rsvheat_mm.apis.geo_io import NODATA_CLASS
from rsvheat_mm.apis.tiling import (DenseBlender, MaskWriter, SceneReader, WindowPipeline,
                                    WindowPlan, blend_weights)
from rsvheat_mm.datasets.transforms.geotiff import LoadGeoRasterFromFile
from tests.helpers import ROOT, python_env
from tests.test_practical.conftest import SEG_DEMO, UTM_TRANSFORM, loveda_rgb, write_geotiff


# -- plan ------------------------------------------------------------------------------------
@pytest.mark.parametrize('shape, tile, overlap', [((520, 600), (96, 160), (40, 24)),
                                                  ((50, 70), 128, 32),
                                                  ((300, 90), (100, 90), (10, 0))])
def test_plan_rows_and_cores_tile_the_scene_once(shape, tile, overlap):
    plan = WindowPlan(*shape, tile, overlap)
    cover = np.zeros(shape, np.int64)
    for (x0, y0, x1, y1), (cx0, cy0, cx1, cy1) in plan.owned():
        assert x0 == cx0 and y0 == cy0 and cx1 <= x1 and cy1 <= y1
        cover[cy0:cy1, cx0:cx1] += 1
    assert (cover == 1).all()
    assert list(plan) == plan.windows and len(plan) == len(plan.windows)
    for row, nxt in zip(plan.rows, plan.rows[1:] + [None]):
        assert all(w[1] == row.y0 and w[3] == row.y1 for w in row.windows)
        assert row.final_y == (nxt.y0 if nxt else shape[0])


# -- blender ---------------------------------------------------------------------------------
def _window_probs(rng, plan, c):
    probs = {}
    for x0, y0, x1, y1 in plan:
        p = rng.random((c, y1 - y0, x1 - x0)).astype(np.float32)
        probs[(x0, y0, x1, y1)] = p / p.sum(0, keepdims=True)
    return probs


@pytest.mark.parametrize('blend', ['mean', 'gaussian'])
@pytest.mark.parametrize('shape, tile, overlap', [((520, 600), (96, 160), (40, 24)),
                                                  ((64, 64), 128, 32),
                                                  ((257, 131), (64, 64), (63, 1))])
def test_blender_equals_whole_scene_accumulation(blend, shape, tile, overlap):
    rng = np.random.default_rng(0)
    h, w = shape
    plan = WindowPlan(h, w, tile, overlap)
    probs = _window_probs(rng, plan, 3)
    nodata = {win: rng.random((win[3] - win[1], win[2] - win[0])) < 0.01 for win in plan}
    acc, wsum, nd = np.zeros((3, h, w)), np.zeros((h, w)), np.zeros((h, w), bool)
    for win, p in probs.items():
        x0, y0, x1, y1 = win
        weight = blend_weights(y1 - y0, x1 - x0, blend)
        acc[:, y0:y1, x0:x1] += p * weight
        wsum[y0:y1, x0:x1] += weight
        nd[y0:y1, x0:x1] |= nodata[win]
    reference = acc / wsum

    blender = DenseBlender(plan, blend)
    out, nd_out = np.full((3, h, w), np.nan), np.zeros((h, w), bool)
    covered = np.zeros((h, w), np.int64)
    th, tw = plan.tile
    shared = max(row.y1 - row.final_y for row in plan.rows)  # rows shared by two rows of windows
    # float32 sums of 3 classes + weights: one window and one strip of the scene's
    # width (the rows shared by two rows of windows)
    bound = 4 * 4 * (min(th, h) * min(tw, w) + shared * w)
    for win in plan:
        patch = blender.add(win, probs[win], nodata[win])
        ph, pw = patch.probs.shape[1:]
        out[:, patch.y0:patch.y0 + ph, patch.x0:patch.x0 + pw] = patch.probs
        nd_out[patch.y0:patch.y0 + ph, patch.x0:patch.x0 + pw] = patch.nodata
        covered[patch.y0:patch.y0 + ph, patch.x0:patch.x0 + pw] += 1
        # what the blender holds: one window and a strip of overlap x width, not the scene
        held = sum(a.nbytes for a in (blender._acc, blender._wsum) + blender._shared[:2])
        assert held <= bound
    assert blender.finished and (covered == 1).all()
    np.testing.assert_allclose(out, reference, atol=2e-6)
    np.testing.assert_array_equal(nd_out, nd)
    with pytest.raises(ValueError, match='after the last window'):
        blender.add(plan.windows[0], probs[plan.windows[0]])


def test_blender_refuses_windows_out_of_order():
    plan = WindowPlan(100, 100, 60, 20)
    blender = DenseBlender(plan)
    with pytest.raises(ValueError, match='out of plan order'):
        blender.add(plan.windows[1], np.ones((2, 60, 60), np.float32))
    with pytest.raises(RuntimeError, match=r'returned a \(30, 60\) map'):
        blender.add(plan.windows[0], np.ones((2, 30, 60), np.float32))


# -- writer ----------------------------------------------------------------------------------
def test_mask_writer_streams_an_atomic_geotiff(tmp_path):
    geo = dict(crs='EPSG:32650', transform=UTM_TRANSFORM)
    mask = (np.arange(300 * 270).reshape(300, 270) % 7).astype(np.uint8)
    mask[:10] = NODATA_CLASS
    out = str(tmp_path / 'm.tif')
    with MaskWriter(300, 270, out, geo, colormap={0: (1, 2, 3, 255)}, preview_side=100) as w:
        for y0 in range(0, 300, 70):
            for x0 in range(0, 270, 100):
                w.write(y0, x0, mask[y0:y0 + 70, x0:x0 + 100])
        assert not osp.exists(out)  # renamed onto the target only at the end
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(1), mask)
        assert src.nodata == 255 and src.crs.to_epsg() == 32650
        assert src.colormap(1)[0] == (1, 2, 3, 255)
    np.testing.assert_array_equal(w.counts, np.bincount(mask.ravel(), minlength=256))
    assert w.mask is None and w.preview.shape == (100, 90)
    rows, cols = (np.arange(100) + 0.5) * 3, (np.arange(90) + 0.5) * 3  # pixel centres
    np.testing.assert_array_equal(w.preview, mask[rows.astype(int)][:, cols.astype(int)])
    # an incomplete map is an error and leaves nothing behind
    with pytest.raises(RuntimeError, match='150 of 300 rows'):
        with MaskWriter(300, 270, str(tmp_path / 'half.tif')) as w:
            w.write(0, 0, mask[:150])
    with pytest.raises(ValueError, match='expected 150'):
        with MaskWriter(300, 270, str(tmp_path / 'gap.tif')) as w:
            w.write(0, 0, mask[:150])
            w.write(200, 0, mask[200:])
    assert sorted(os.listdir(tmp_path)) == ['m.tif']


# -- reader ----------------------------------------------------------------------------------
WINDOWS = [(0, 0, 150, 200), (10, 20, 60, 45), (100, 150, 150, 200), (0, 199, 1, 200)]


def test_windowed_geotiff_reading_equals_the_full_read(multispectral_nodata):
    """A window equals the slice of the full read: band selection, colour order,
    normalisation and the nodata mask (a 30 x 40 block with nodata 0)."""
    path, arr = multispectral_nodata
    for loader in (LoadGeoRasterFromFile(bands=[4, 0, 2]),
                   LoadGeoRasterFromFile(bands=[2, 1, 0], color_type='color',
                                         norm=dict(type='range', min=0, max=2000))):
        reader = SceneReader(path, loader)
        assert (reader.height, reader.width) == (200, 150) and reader.is_raster
        full = reader.read()
        assert full.nodata[50:80, 20:60].all() and full.nodata.sum() == 30 * 40
        for x0, y0, x1, y1 in WINDOWS:
            win = reader.read((x0, y0, x1, y1))
            np.testing.assert_array_equal(win.img, full.img[y0:y1, x0:x1])
            np.testing.assert_array_equal(win.nodata, full.nodata[y0:y1, x0:x1])
    # the values themselves: bands 4, 0, 2 of the file
    win = SceneReader(path, LoadGeoRasterFromFile(bands=[4, 0, 2])).read((10, 20, 60, 45))
    np.testing.assert_array_equal(win.img, arr[20:45, 10:60][..., [4, 0, 2]])


def test_windowed_pair_and_nan_reading(geo_dir):
    """Two co-registered float rasters read as one stack; NaN pixels (no nodata
    tag) are nodata, filled with 0, and reported as non-finite."""
    rgb = loveda_rgb().astype(np.float32) / 255
    b = rgb[::-1].copy()
    b[100:140, 200:260] = np.nan
    pa = write_geotiff(geo_dir / 'float_a.tif', rgb, 'EPSG:32650', UTM_TRANSFORM)
    pb = write_geotiff(geo_dir / 'float_b.tif', b, 'EPSG:32650', UTM_TRANSFORM)
    reader = SceneReader((pa, pb), LoadGeoRasterFromFile(nonfinite='nodata'))
    full = reader.read()
    assert full.img.shape == (320, 384, 6) and reader.extra['date_channels'] == 3
    assert np.isfinite(full.img).all()
    assert full.nonfinite.sum() == 40 * 60 and (full.nodata == full.nonfinite).all()
    np.testing.assert_array_equal(full.img[..., :3], rgb)
    assert (full.img[100:140, 200:260, 3:] == 0).all()
    for x0, y0, x1, y1 in [(190, 90, 290, 150), (0, 0, 384, 320), (5, 300, 40, 320)]:
        win = reader.read((x0, y0, x1, y1))
        np.testing.assert_array_equal(win.img, full.img[y0:y1, x0:x1])
        np.testing.assert_array_equal(win.nodata, full.nodata[y0:y1, x0:x1])
    # arrays: NaN pixels are nodata too, the caller's array is left alone
    arr = b.copy()
    win = SceneReader(arr).read((190, 90, 290, 150))
    assert win.nonfinite.sum() == 40 * 60 and np.isfinite(win.img).all()
    assert np.isnan(arr[100:140, 200:260]).all()
    with pytest.raises(ValueError, match='not on the same grid'):
        shifted = write_geotiff(geo_dir / 'float_shift.tif', rgb, 'EPSG:32650',
                                (0.3, 0.0, 310030.0, 0.0, -0.3, 3500000.0))
        SceneReader((pa, shifted), LoadGeoRasterFromFile())


# -- tiled segmentation against a reference ------------------------------------------------
class FakeSegmentor:
    """Stands in for an mmseg segmentor: 4-class logits from the pixels and from
    the position inside the window (so overlapping windows disagree)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.calls = []

    @staticmethod
    def logits(img_hwc: np.ndarray) -> np.ndarray:
        img = img_hwc.astype(np.float64)
        h, w = img.shape[:2]
        u = np.linspace(0, np.pi, w)[None]
        v = np.linspace(0, np.pi, h)[:, None]
        base = img.mean(axis=2) / 40
        return np.stack([np.sin(base + k) * (1 + 0.6 * np.cos(u + k) * np.sin(v))
                         for k in range(4)]).astype(np.float32)

    def test_step(self, data):
        from mmengine.structures import PixelData
        out = []
        self.calls.append(len(data['inputs']))
        for img, sample in zip(data['inputs'], data['data_samples']):
            logits = self.logits(img.permute(1, 2, 0).numpy())
            sample.seg_logits = PixelData(data=torch.from_numpy(logits))
            out.append(sample)
        return out


@pytest.fixture(scope='module')
def window_cfg():
    cfg = Config.fromfile(SEG_DEMO)
    cfg.test_dataloader.dataset.pipeline = [dict(type='LoadImageFromFile'),
                                            dict(type='PackSegInputs')]
    return cfg


@pytest.mark.parametrize('blend', ['mean', 'gaussian'])
def test_tiled_segmentation_equals_whole_scene_blend(window_cfg, loveda_geotiff, tmp_path,
                                                     blend):
    from rsvheat_mm.apis import inference_segmentor_tiled
    path, rgb = loveda_geotiff  # 384 x 320, nodata = 0 in a 40 px left border
    model = FakeSegmentor(window_cfg)
    tile, overlap = (96, 160), (40, 24)
    out = inference_segmentor_tiled(model, path, tile=tile, overlap=overlap, batch_size=3,
                                    blend=blend, out_file=str(tmp_path / 'mask.tif'),
                                    palette=[[1, 2, 3]] * 4)
    plan = WindowPlan(320, 384, tile, overlap)
    assert out['num_windows'] == len(plan) == 5 * 3 and sum(model.calls) == len(plan)
    assert max(model.calls) == 3
    # reference: softmax of each window's logits, blended over the whole scene at once
    bgr = rgb[..., ::-1]
    acc, wsum = np.zeros((4, 320, 384)), np.zeros((320, 384))
    for x0, y0, x1, y1 in plan:
        logits = FakeSegmentor.logits(bgr[y0:y1, x0:x1]).astype(np.float64)
        prob = np.exp(logits - logits.max(0)) / np.exp(logits - logits.max(0)).sum(0)
        weight = blend_weights(y1 - y0, x1 - x0, blend)
        acc[:, y0:y1, x0:x1] += prob * weight
        wsum[y0:y1, x0:x1] += weight
    ref = acc / wsum
    expected = ref.argmax(0)
    nodata = np.all(rgb == 0, axis=2)
    expected[nodata] = NODATA_CLASS
    top2 = np.sort(ref, axis=0)[-2:]
    clear = (top2[1] - top2[0] > 1e-5) | nodata  # leave float near-ties out
    assert clear.mean() > 0.99 and len(np.unique(expected[~nodata])) == 4
    np.testing.assert_array_equal(out['mask'][clear], expected[clear])
    assert out['nodata_pixels'] == nodata.sum() and out['nonfinite_pixels'] == 0
    with rasterio.open(tmp_path / 'mask.tif') as src:
        np.testing.assert_array_equal(src.read(1), out['mask'])
        assert src.nodata == 255 and src.crs.to_epsg() == 32650
        assert tuple(src.transform)[:6] == pytest.approx(UTM_TRANSFORM)
    # one window covering the scene is the whole-scene prediction (no blending)
    single = inference_segmentor_tiled(model, path, tile=(320, 384), overlap=0)
    whole = FakeSegmentor.logits(bgr).argmax(0)
    whole[nodata] = NODATA_CLASS
    np.testing.assert_array_equal(single['mask'], whole)


def test_window_pipeline_reads_like_the_config(window_cfg, loveda_geotiff):
    """Whole-image results through the pipeline: the config's loader's channel
    order (BGR for LoadImageFromFile), nodata from the raster, georeferencing."""
    path, rgb = loveda_geotiff
    pipeline = WindowPipeline(window_cfg)
    reader = pipeline.reader(path)
    data = reader.read()
    np.testing.assert_array_equal(data.img, rgb[..., ::-1])
    packed = pipeline(pipeline.results(data, reader))
    assert packed['inputs'].shape == (3, 320, 384)
    assert packed['data_samples'].img_path == path
    # a PNG of the same pixels: decoded once by the config's loader, same windows
    import cv2
    png = osp.join(osp.dirname(path), 'loveda.png')
    cv2.imwrite(png, rgb[..., ::-1])
    png_reader = pipeline.reader(png)
    assert not png_reader.is_raster
    for win in [(0, 0, 384, 320), (40, 30, 200, 100)]:
        np.testing.assert_array_equal(png_reader.read(win).img, reader.read(win).img)


# -- memory ----------------------------------------------------------------------------------
_PEAK = r'''
import resource, sys, runpy
sys.argv = ['tools/infer.py'] + sys.argv[1:]
try:
    runpy.run_path('tools/infer.py', run_name='__main__')
finally:
    print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
'''


def _scene(path, size, pair=False):
    """A ``size`` px RGB GeoTIFF mirrored from a real LoveDA tile (and a changed
    second date for ``pair``)."""
    tile = loveda_rgb('1.png', (0, 0, 1024, 1024))
    reps = -(-size // 1024)
    big = np.tile(np.concatenate([tile, tile[:, ::-1]], axis=1), (reps, reps, 1))
    big = np.ascontiguousarray(big[:size, :size])
    paths = [write_geotiff(path + '_a.tif', big, 'EPSG:32650', UTM_TRANSFORM)]
    if pair:
        big[size // 3:size // 2, size // 4:size // 2] = tile[:1, :1]
        paths.append(write_geotiff(path + '_b.tif', big, 'EPSG:32650', UTM_TRANSFORM))
    return paths


def _peak_rss_mib(config, inputs, out_dir, tile, options):
    cmd = [sys.executable, '-c', _PEAK, config, *inputs, '--out-dir', out_dir, '--tile',
           str(tile), '--overlap', '64', '--device', 'cpu', '--cfg-options', *options]
    proc = subprocess.run(cmd, cwd=ROOT, env=python_env(GDAL_CACHEMAX='16', OMP_NUM_THREADS='1'),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith('PEAK_RSS_KIB')][-1]
    return int(line.split()[1]) / 1024, proc.stdout


@pytest.mark.slow  # about 75 s per task on 2 cores
@pytest.mark.parametrize('task', ['segmentation', 'change_detection'])
def test_tiled_memory_does_not_grow_with_the_scene(tmp_path, task):
    """tools/infer.py --tile on a 2048 and a 4096 px GeoTIFF (4x the pixels; both
    drawn on a 2048 px preview): the peak RSS of the larger scene is within
    50 MiB of the smaller one's (a 4096 px scene's probability map alone would
    take 7 x 64 = 448 MiB, its class map as int64 128 MiB)."""
    from tests.test_practical.conftest import CD_DEMO
    if task == 'segmentation':  # windows resized to 256 px (CPU time)
        config, options = SEG_DEMO, ['test_dataloader.dataset.pipeline.1.scale=(256,256)']
    else:  # 256 px crops inside each window
        config, options = CD_DEMO, ['model.test_cfg.crop_size=(256,256)',
                                    'model.test_cfg.stride=(256,256)']
    peaks = {}
    for size in (2048, 4096):
        inputs = _scene(str(tmp_path / f's{size}'), size, pair=task == 'change_detection')
        peaks[size], out = _peak_rss_mib(config, inputs, str(tmp_path / f'out{size}'), 512,
                                         options)
        assert '[' + task + ']' in out
        with rasterio.open(tmp_path / f'out{size}' / 'preds' / f's{size}_a.tif') as src:
            assert (src.width, src.height) == (size, size) and src.crs.to_epsg() == 32650
    print(f'{task}: peak RSS {peaks}')
    assert peaks[4096] - peaks[2048] < 50, peaks
