"""GeoTIFF / multiband loading transforms and georeferenced outputs."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import tifffile
import torch

from rsvheat_mm.apis.geo_io import (GeoTIFFStripWriter, box_corners, detections_to_geojson,
                                    display_rgb, read_georef, write_geotiff)
from rsvheat_mm.datasets.transforms import (GeoRasterNodataToIgnore, LoadGeoRasterFromFile,
                                            LoadGeoRasterPair)
from rsvheat_mm.datasets.transforms.geotiff import normalize_bands
from tests.test_practical.conftest import MULTISPECTRAL, UTM_TRANSFORM, write_geotiff as write_tif


def test_multispectral_uint16_bands_and_georef():
    ref = tifffile.imread(MULTISPECTRAL)  # independent reader: (H, W, 5) pixel-interleaved
    res = LoadGeoRasterFromFile()(dict(img_path=MULTISPECTRAL))
    assert res['img'].shape == (200, 150, 5) and res['img'].dtype == np.uint16
    np.testing.assert_array_equal(res['img'], ref)  # no 8-bit rescaling, file band order
    assert res['img_shape'] == res['ori_shape'] == (200, 150)
    assert not res['nodata_mask'].any()
    geo = res['geo']
    assert 'WGS 84' in geo['crs'] and geo['count'] == 5
    assert geo['transform'][2] == pytest.approx(-115.2478476)

    # selection + OpenCV-style colour: bands (0, 1, 2) as R, G, B -> B, G, R
    res = LoadGeoRasterFromFile(bands=(0, 1, 2), color_type='color')(
        dict(img_path=MULTISPECTRAL))
    np.testing.assert_array_equal(res['img'], ref[..., [2, 1, 0]])

    # a window: the same pixels as slicing, and the window's own transform
    from rasterio.transform import Affine
    res = LoadGeoRasterFromFile(bands=[4, 0])(
        dict(img_path=MULTISPECTRAL, window=(10, 20, 60, 45)))
    np.testing.assert_array_equal(res['img'], ref[20:45, 10:60][..., [4, 0]])
    full = Affine(*LoadGeoRasterFromFile()(dict(img_path=MULTISPECTRAL))['geo']['transform'])
    assert np.allclose(res['geo']['transform'], tuple(full @ Affine.translation(10, 20))[:6])


def test_band_normalisation():
    ref = tifffile.imread(MULTISPECTRAL).astype(np.float64)
    lo, hi = ref.reshape(-1, 5).min(0), ref.reshape(-1, 5).max(0)
    res = LoadGeoRasterFromFile(norm=dict(type='range', min=lo.tolist(), max=hi.tolist(),
                                          out_range=(0, 1)))(dict(img_path=MULTISPECTRAL))
    assert res['img'].dtype == np.float32
    np.testing.assert_allclose(res['img'], (ref - lo) / (hi - lo), atol=1e-6)

    mean, std = ref.reshape(-1, 5).mean(0), ref.reshape(-1, 5).std(0)
    res = LoadGeoRasterFromFile(norm=dict(type='meanstd', mean=mean.tolist(), std=std.tolist()))(
        dict(img_path=MULTISPECTRAL))
    np.testing.assert_allclose(res['img'].reshape(-1, 5).mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(res['img'].reshape(-1, 5).std(0), 1, atol=1e-4)

    res = LoadGeoRasterFromFile(norm=dict(type='percentile', low=2, high=98))(
        dict(img_path=MULTISPECTRAL))
    p2, p98 = np.percentile(ref.reshape(-1, 5), [2, 98], axis=0)
    inside = (ref > p2) & (ref < p98)
    np.testing.assert_allclose(res['img'][inside],
                               ((ref - p2) / (p98 - p2) * 255)[inside], atol=1e-3)
    assert res['img'].min() == 0 and res['img'].max() == 255

    with pytest.raises(ValueError, match='norm.mean has 3 values for an image of 5'):
        normalize_bands(ref, dict(type='meanstd', mean=[1, 2, 3], std=1), path='x.tif')
    with pytest.raises(ValueError, match='norm must be None or a dict'):
        LoadGeoRasterFromFile(norm=dict(type='zscore'))


def test_nodata_mask_fill_and_ignore(multispectral_nodata):
    path, arr = multispectral_nodata
    expected = np.all(arr == 0, axis=2)
    assert expected[50:80, 20:60].all() and expected.sum() == 30 * 40
    res = LoadGeoRasterFromFile(norm=dict(type='range', min=0, max=2000, out_range=(0, 1)),
                                nodata_fill=-1)(dict(img_path=path))
    np.testing.assert_array_equal(res['nodata_mask'], expected)
    assert (res['img'][expected] == -1).all() and (res['img'][~expected] >= 0).all()
    assert res['geo']['nodata'] == 0

    # an explicit nodata value overrides the file's (none of the pixels is 19 in all bands)
    res = LoadGeoRasterFromFile(nodata=19)(dict(img_path=path))
    assert not res['nodata_mask'].any()

    res['gt_seg_map'] = np.ones((200, 150), np.uint8)
    res['nodata_mask'] = expected
    out = GeoRasterNodataToIgnore(ignore_index=255)(res)
    assert (out['gt_seg_map'][expected] == 255).all() and (out['gt_seg_map'][~expected] == 1).all()


def test_errors_name_the_file(tmp_path):
    with pytest.raises(IndexError, match='uint16-5channel.tif.*band\\(s\\) \\[7\\].*has 5'):
        LoadGeoRasterFromFile(bands=[0, 7])(dict(img_path=MULTISPECTRAL))
    with pytest.raises(ValueError, match='has 5 bands; color_type="color" needs 1 or 3'):
        LoadGeoRasterFromFile(color_type='color')(dict(img_path=MULTISPECTRAL))
    with pytest.raises(ValueError, match='window .* is outside the 150x200 raster'):
        LoadGeoRasterFromFile()(dict(img_path=MULTISPECTRAL, window=(100, 0, 200, 10)))
    with pytest.raises(FileNotFoundError, match='missing.tif'):
        LoadGeoRasterFromFile()(dict(img_path=str(tmp_path / 'missing.tif')))


def test_pair_loader(loveda_geotiff, geo_dir):
    path_a, rgb = loveda_geotiff
    path_b = write_tif(geo_dir / 'pair_b.tif', rgb[::-1].copy(), 'EPSG:32650', UTM_TRANSFORM, 0)
    res = LoadGeoRasterPair(color_type='color')(dict(img_path=path_a, img_path2=path_b))
    assert res['img'].shape == (320, 384, 6) and res['date_channels'] == 3
    np.testing.assert_array_equal(res['img'][..., :3], rgb[..., ::-1])
    np.testing.assert_array_equal(res['img'][..., 3:], rgb[::-1, :, ::-1])
    assert res['nodata_mask'][:, :40].all()
    shifted = write_tif(geo_dir / 'pair_shifted.tif', rgb, 'EPSG:32650',
                        (0.3, 0.0, 310030.0, 0.0, -0.3, 3500000.0), 0)
    with pytest.raises(ValueError, match='not on the same grid'):
        LoadGeoRasterPair()(dict(img_path=path_a, img_path2=shifted))


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmseg', 'mmdet', pytest.param(
    'mmrotate', marks=pytest.mark.needs_mmrotate)])
def test_loader_in_each_toolbox_pipeline(scope):
    """The raster loader feeds the stock resize/pack transforms of all toolboxes."""
    from mmcv.transforms import Compose
    from mmengine.registry import init_default_scope
    loader = dict(type='LoadGeoRasterFromFile',
                  norm=dict(type='range', min=0, max=2000, out_range=(0, 255)))
    pipelines = {
        'mmpretrain': [loader, dict(type='ResizeEdge', scale=64), dict(type='PackInputs')],
        'mmseg': [loader, dict(type='Resize', scale=(64, 64), keep_ratio=True),
                  dict(type='PackSegInputs')],
        'mmdet': [loader, dict(type='Resize', scale=(64, 64), keep_ratio=True),
                  dict(type='PackDetInputs',
                       meta_keys=('img_path', 'ori_shape', 'img_shape', 'scale_factor'))],
        'mmrotate': [loader, dict(type='mmdet.Resize', scale=(64, 64), keep_ratio=True),
                     dict(type='mmdet.PackDetInputs',
                          meta_keys=('img_path', 'ori_shape', 'img_shape', 'scale_factor'))],
    }
    import importlib
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    init_default_scope(scope)
    packed = Compose(pipelines[scope])(dict(img_path=MULTISPECTRAL))
    assert packed['inputs'].shape[0] == 5
    assert packed['inputs'].dtype == torch.float32
    # ResizeEdge scales the short edge, the keep-ratio Resizes fit into 64 x 64
    edge = min if scope == 'mmpretrain' else max
    assert edge(packed['inputs'].shape[1:]) == 64
    assert packed['data_samples'].ori_shape == (200, 150)


def test_geotiff_writer_is_atomic_and_keeps_georef(tmp_path):
    out = str(tmp_path / 'mask.tif')
    geo = dict(crs='EPSG:32650', transform=UTM_TRANSFORM)
    mask = (np.arange(300 * 270).reshape(300, 270) % 7).astype(np.uint8)
    write_geotiff(out, mask, geo, nodata=255, colormap={0: (255, 0, 0, 255)})
    import rasterio
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 32650
        assert tuple(src.transform)[:6] == pytest.approx(UTM_TRANSFORM)
        assert src.nodata == 255 and src.colormap(1)[0] == (255, 0, 0, 255)
        np.testing.assert_array_equal(src.read(1), mask)
    # a failure while writing leaves the previous file and no temporary behind
    with pytest.raises(RuntimeError, match='boom'):
        with GeoTIFFStripWriter(out, 300, 270, geo=geo) as writer:
            writer.write(np.zeros((10, 270), np.uint8), 0)
            raise RuntimeError('boom')
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(1), mask)
    assert sorted(os.listdir(tmp_path)) == ['mask.tif']
    assert read_georef(out)['width'] == 270


@pytest.mark.needs_mmrotate
def test_box_corners_match_mmrotate():
    from mmrotate.structures.bbox import rbox2qbox
    rboxes = torch.tensor([[50., 40., 30., 10., 0.3], [10., 20., 8., 16., -1.2]])
    ref = rbox2qbox(rboxes).numpy().reshape(-1, 4, 2)
    ours = box_corners(rboxes.numpy())
    # same quadrilateral (as point sets)
    for a, b in zip(ours, ref):
        d = np.linalg.norm(a[:, None] - b[None], axis=-1)
        assert d.min(axis=1).max() < 1e-4
    np.testing.assert_allclose(box_corners(np.array([[1., 2., 5., 7.]]))[0],
                               [[1, 2], [5, 2], [5, 7], [1, 7]])


def test_geojson_in_source_crs(tmp_path):
    geo = dict(crs='EPSG:32650', transform=UTM_TRANSFORM)
    fc = detections_to_geojson(np.array([[10., 20., 30., 60.]]), [0.9], [1],
                               classes=['a', 'plane'], geo=geo, properties=dict(source='x'))
    assert fc['crs']['properties']['name'] == 'urn:ogc:def:crs:EPSG::32650'
    feat = fc['features'][0]
    assert feat['properties'] == dict(score=0.9, label=1, **{'class': 'plane'})
    ring = np.array(feat['geometry']['coordinates'][0])
    assert len(ring) == 5 and (ring[0] == ring[-1]).all()
    xs, ys = ring[:, 0], ring[:, 1]
    assert xs.min() == pytest.approx(310000 + 10 * 0.3) and xs.max() == pytest.approx(310009.0)
    assert ys.max() == pytest.approx(3500000 - 20 * 0.3) and ys.min() == pytest.approx(3499982.0)
    # exterior ring counter-clockwise (RFC 7946)
    area = np.sum(xs[:-1] * ys[1:] - xs[1:] * ys[:-1])
    assert area > 0
    json.dumps(fc, allow_nan=False)


def test_display_rgb_stretches_uint16():
    img = tifffile.imread(MULTISPECTRAL)
    rgb = display_rgb(img, bands=[2, 1, 0])
    assert rgb.shape == (200, 150, 3) and rgb.dtype == np.uint8
    assert rgb.max() == 255 and rgb.min() == 0
    gray = display_rgb(np.full((4, 5), 7, np.uint8))
    assert gray.shape == (4, 5, 3) and (gray == 7).all()


def test_read_georef_plain_image_is_none():
    from tests.helpers import DEMO_DATA
    assert read_georef(osp.join(DEMO_DATA, 'scenes', '1.png')) is None


# -- NaN / Inf in float rasters -------------------------------------------------------------
def test_nan_pixels_without_nodata_tag_are_refused_or_masked(float_nan_geotiff, geo_dir):
    """A training image with NaN fails with an error naming the file; asked for, the
    NaN pixels join the nodata mask (and are filled); a NaN nodata tag works as before."""
    from tests.test_practical.conftest import NAN_BLOCK
    path, arr = float_nan_geotiff
    block = np.zeros(arr.shape[:2], bool)
    block[NAN_BLOCK] = True
    with pytest.raises(ValueError, match=r'ms_float_nan\.tif: 2400 pixel\(s\) .* NaN/Inf'):
        LoadGeoRasterFromFile()(dict(img_path=path))
    with pytest.raises(ValueError, match=r'ms_float_nan\.tif: 100 pixel\(s\) of the window'):
        LoadGeoRasterFromFile()(dict(img_path=path, window=(80, 90, 100, 110)))
    LoadGeoRasterFromFile()(dict(img_path=path, window=(0, 0, 30, 60)))  # no NaN in it
    res = LoadGeoRasterFromFile(nonfinite='nodata', norm=dict(type='percentile'))(
        dict(img_path=path))
    np.testing.assert_array_equal(res['nodata_mask'], block)
    assert np.isfinite(res['img']).all() and (res['img'][block] == 0).all()
    assert res['img'].max() == 255  # statistics over the valid pixels only
    # the nodata value may say NaN itself (GDAL masks NaN pixels)
    res = LoadGeoRasterFromFile(nodata=float('nan'))(dict(img_path=path))
    np.testing.assert_array_equal(res['nodata_mask'], block)
    tagged = write_tif(geo_dir / 'ms_float_nan_tag.tif', arr, 'EPSG:4326',
                       (1e-5, 0, 0, 0, -1e-5, 0), nodata=float('nan'))
    np.testing.assert_array_equal(
        LoadGeoRasterFromFile()(dict(img_path=tagged))['nodata_mask'], block)
    # a nodata tag that does not cover the NaN pixels does not silence them
    other = arr.copy()
    other[:5] = -9999
    other_path = write_tif(geo_dir / 'ms_float_nan_9999.tif', other, 'EPSG:4326',
                           (1e-5, 0, 0, 0, -1e-5, 0), nodata=-9999)
    with pytest.raises(ValueError, match='ms_float_nan_9999.tif: 2400 pixel'):
        LoadGeoRasterFromFile()(dict(img_path=other_path))
    with pytest.raises(ValueError, match=r'ms_float_nan\.tif: 2400 pixel'):
        LoadGeoRasterPair()(dict(img_path=tagged, img_path2=path))
    with pytest.raises(ValueError, match='nonfinite must be one of'):
        LoadGeoRasterFromFile(nonfinite='ignore')


def test_check_finite_image_after_the_toolbox_loaders(float_nan_geotiff, tmp_path):
    """Float TIFFs loaded by the toolboxes' own loaders (OpenCV, 'unchanged') with
    CheckFiniteImage after them: the error names the file (both files of a pair)."""
    import cv2
    from mmcv.transforms import Compose
    from mmengine.registry import DefaultScope
    _, arr = float_nan_geotiff
    rgb = np.ascontiguousarray(arr[..., :3])
    bad, good = str(tmp_path / 'bad.tif'), str(tmp_path / 'good.tif')
    # uncompressed: OpenCV 4.x (the OneDL stack's) writes float TIFFs as lossy
    # SGILOG by default, which turns NaN into numbers
    raw = [cv2.IMWRITE_TIFF_COMPRESSION, 1]
    assert cv2.imwrite(bad, rgb, raw) and cv2.imwrite(good, np.nan_to_num(rgb), raw)
    with DefaultScope.overwrite_default_scope('mmseg'):
        import mmseg.utils
        mmseg.utils.register_all_modules(init_default_scope=False)
        pipeline = Compose([dict(type='LoadImageFromFile', color_type='unchanged'),
                            dict(type='rsvheat_mm.CheckFiniteImage'),
                            dict(type='PackSegInputs')])
        assert pipeline(dict(img_path=good))['inputs'].shape == (3, 200, 150)
        with pytest.raises(ValueError, match=r'bad\.tif: 2400 pixel\(s\) of the image'):
            pipeline(dict(img_path=bad))
        pair = Compose([dict(type='rsvheat_mm.LoadBitemporalImages', color_type='unchanged'),
                        dict(type='rsvheat_mm.CheckFiniteImage')])
        with pytest.raises(ValueError, match=r'good\.tif \+ .*bad\.tif: 2400 pixel'):
            pair(dict(img_path=good, img_path2=bad))
    # pixels a loader already marked as nodata are allowed
    from rsvheat_mm.datasets.transforms import CheckFiniteImage
    mask = np.isnan(rgb).any(axis=2)
    CheckFiniteImage()(dict(img=rgb, nodata_mask=mask, img_path=bad))
