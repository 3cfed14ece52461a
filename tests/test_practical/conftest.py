"""Fixtures of the practical-use tests (GeoTIFF I/O, inferencer, ONNX, model index).

Georeferenced rasters are written by the test run itself with rasterio, from
the bundled real samples (demo/data, see demo/data/SOURCES.md): a LoveDA tile
as a UTM-projected 3-band GeoTIFF with a nodata border, the DIOR image as a
GeoTIFF for detection, two LoveDA crops as a co-registered GeoTIFF pair; the
bundled 5-band uint16 TIFF (itself georeferenced, EPSG:4326) is used as it is,
as a copy with a nodata block and as float32 reflectance with a NaN block and
no nodata tag.
"""
import os.path as osp
import warnings

import cv2
import numpy as np
import pytest

from tests.helpers import DEMO_DATA, ROOT

MULTISPECTRAL = osp.join(DEMO_DATA, 'multispectral', 'uint16-5channel.tif')
DEMO_CONFIGS = osp.join(ROOT, 'configs', 'demo')
SEG_DEMO = osp.join(DEMO_CONFIGS, 'upernet_rsvheat-demo_1xb2-40iter_loveda-samples-256x256.py')
CLS_DEMO = osp.join(DEMO_CONFIGS, 'rsvheat-demo_1xb4-24iter_scenes-cls-224px.py')
DET_DEMO = osp.join(DEMO_CONFIGS, 'faster-rcnn_rsvheat-demo_1xb2-20iter_dior-samples-256x256.py')
ROT_DEMO = osp.join(DEMO_CONFIGS,
                    'oriented-rcnn-le90_rsvheat-demo_1xb2-20iter_dota-samples-128x128.py')
CD_DEMO = osp.join(DEMO_CONFIGS, 'siam-upernet_rsvheat-demo_1xb4-100iter_planted-cd-128x128.py')

UTM_50N = 'EPSG:32650'
# 0.3 m pixels, north-up, origin at an arbitrary UTM 50N position
UTM_TRANSFORM = (0.3, 0.0, 310000.0, 0.0, -0.3, 3500000.0)


def write_geotiff(path, img_hwc, crs, transform, nodata=None):
    """Write an (H, W, C) array as a GeoTIFF with rsvheat_mm's writer; returns the path."""
    from rsvheat_mm.apis.geo_io import write_geotiff as write
    write(str(path), np.ascontiguousarray(img_hwc.transpose(2, 0, 1)),
          dict(crs=crs, transform=tuple(transform)), nodata=nodata)
    return str(path)


def loveda_rgb(name='0.png', box=(0, 0, 384, 320)):
    """RGB crop (x0, y0, x1, y1) of a bundled LoveDA tile."""
    bgr = cv2.imread(osp.join(DEMO_DATA, 'loveda', 'img_dir', name), cv2.IMREAD_COLOR)
    x0, y0, x1, y1 = box
    return np.ascontiguousarray(bgr[y0:y1, x0:x1, ::-1])


@pytest.fixture(scope='session')
def geo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp('geo')


@pytest.fixture(scope='session')
def loveda_geotiff(geo_dir):
    """3-band uint8 LoveDA crop, UTM 50N, 0.3 m, nodata 0 in a 40 px left border."""
    rgb = loveda_rgb()
    rgb[:, :40] = 0
    path = write_geotiff(geo_dir / 'loveda_utm.tif', rgb, UTM_50N, UTM_TRANSFORM, nodata=0)
    return path, rgb


@pytest.fixture(scope='session')
def multispectral_nodata(geo_dir):
    """The bundled 5-band uint16 TIFF with nodata = 0 in a 30 x 40 block."""
    import rasterio
    with rasterio.open(MULTISPECTRAL) as src:
        arr = src.read().transpose(1, 2, 0)
        crs, transform = src.crs, tuple(src.transform)[:6]
    arr = arr.copy()
    arr[50:80, 20:60] = 0
    return write_geotiff(geo_dir / 'ms_nodata.tif', arr, crs, transform, nodata=0), arr


NAN_BLOCK = (slice(60, 100), slice(30, 90))  # rows, columns


@pytest.fixture(scope='session')
def float_nan_geotiff(geo_dir):
    """The bundled 5-band TIFF as float32 reflectance (DN / 10000) with a 40 x 60
    NaN block and no nodata tag -- how float rasters often mark missing data."""
    import rasterio
    with rasterio.open(MULTISPECTRAL) as src:
        arr = src.read().transpose(1, 2, 0).astype(np.float32) / 10000
        crs, transform = src.crs, tuple(src.transform)[:6]
    arr[NAN_BLOCK] = np.nan
    path = write_geotiff(geo_dir / 'ms_float_nan.tif', arr, crs, transform)
    with rasterio.open(path) as src:
        assert src.nodata is None and src.dtypes[0] == 'float32'
    return path, arr


@pytest.fixture(scope='session')
def seg_cfg_small():
    """The demo segmentation config with a 256 px test resize (CPU time)."""
    from mmengine.config import Config
    cfg = Config.fromfile(SEG_DEMO)
    for t in cfg.test_dataloader.dataset.pipeline:
        if t['type'] == 'Resize':
            t['scale'] = (256, 256)
    return cfg


@pytest.fixture(scope='session')
def seg_inferencer(seg_cfg_small):
    from rsvheat_mm.apis import RSVHeatInferencer
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        inferencer = RSVHeatInferencer(seg_cfg_small, device='cpu', show_progress=False)
    inferencer.model.init_weights()
    return inferencer
