"""Small datasets in the real on-disk formats, made from the bundled samples.

Every builder writes the *raw release* layout of a dataset under a temporary
folder (the preparation tools then turn it into what the configs read):

* ISPRS Potsdam: ``2_Ortho_RGB.zip`` / ``5_Labels_all.zip`` with
  ``top_potsdam_<i>_<j>_RGB.tif`` / ``..._label.tif`` (colour-coded), from the
  bundled Potsdam crop and its label (tile 2_10, a train tile of mmseg's
  split) and the same crop transposed (tile 2_13, a val tile).
* iSAID: ``{train,val,test}/images/part1.zip`` of DOTA images and
  ``{train,val}/Semantic_masks/images.zip`` of ``<id>_instance_color_RGB.png``
  masks. The image is the bundled DOTA patch (iSAID images *are* DOTA
  images); the mask fills its four ``plane`` boxes (DOTA label file, scaled
  from the 1024 px frame to the 170 px patch) with iSAID's plane colour.
* AIR-PolSAR-Seg: ``<id>_HH|HV|VH|VV.tiff`` + ``<id>_gt.png`` (512 px) and
* WHU-OPT-SAR: ``optical/``, ``sar/``, ``lbl/`` GeoTIFFs,
  both from the bundled LoveDA tiles. There is no real SAR sample, so the
  SAR bands are *speckled intensity*: the tile's luminance squared (a
  backscatter-like power), times independent 4-look gamma speckle, as dB
  (WHU, uint8) or amplitude (PolSAR, uint8; cross-pol at 0.2 x, VV at
  0.8 x the HH power). The WHU optical file is R, G, B of the tile plus a
  4th (NIR) band copied from green -- the configs read only R, G, B. Labels
  are LoveDA's real label maps with the class mapping below.
"""
import os
import os.path as osp
import zipfile

import cv2
import numpy as np
import tifffile

from tests.helpers import DEMO_DATA

POTSDAM_COLORS = np.array([[0, 0, 0], [255, 255, 255], [0, 0, 255], [0, 255, 255],
                           [0, 255, 0], [255, 255, 0], [255, 0, 0]], np.uint8)  # RGB, mmseg ids
ISAID_PLANE_RGB = (0, 127, 255)
# LoveDA ids: 0 no-data, 1 background, 2 building, 3 road, 4 water, 5 barren,
# 6 forest, 7 agriculture.
LOVEDA_TO_WHU = np.array([0, 70, 20, 60, 40, 30, 50, 10], np.uint8)  # WHU label values
# -> AIR-PolSAR-Seg ids (housing 0, industrial 1, natural 2, land_use 3,
# water 4, other 5); 255 = unlabeled (black in the colour label).
LOVEDA_TO_AIR = np.array([255, 5, 0, 3, 4, 1, 2, 3], np.uint8)


def _rgb_write(path, rgb):
    os.makedirs(osp.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, np.ascontiguousarray(rgb[..., ::-1]))


def _zip(zip_path, files):
    os.makedirs(osp.dirname(zip_path), exist_ok=True)
    with zipfile.ZipFile(zip_path, 'w') as zf:
        for arcname, path in files.items():
            zf.write(path, arcname)


def loveda(index, size=None):
    """RGB image and label of bundled LoveDA tile ``index`` (optionally resized)."""
    img = cv2.imread(osp.join(DEMO_DATA, 'loveda', 'img_dir', f'{index}.png'))[..., ::-1]
    lab = cv2.imread(osp.join(DEMO_DATA, 'loveda', 'ann_dir', f'{index}.png'), 0)
    if size is not None:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        lab = cv2.resize(lab, (size, size), interpolation=cv2.INTER_NEAREST)
    return np.ascontiguousarray(img), lab


def speckled_power(rgb, rng, looks=4, gain=1.0):
    """Backscatter-like power: luminance^2 x gamma speckle (mean 1)."""
    lum = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0
    speckle = rng.gamma(looks, 1.0 / looks, size=lum.shape)
    return gain * (lum**2 + 1e-3) * speckle


def to_db_uint8(power, lo=-30.0, hi=5.0):
    db = 10 * np.log10(power)
    return np.clip((db - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)


def make_potsdam_raw(root):
    """ISPRS Potsdam zips with two 512 px tiles: 2_10 (train) and 2_13 (val)."""
    img = cv2.imread(osp.join(DEMO_DATA, 'potsdam', 'img_dir', '2_10_0_0_512_512.png'))[..., ::-1]
    lab = cv2.imread(osp.join(DEMO_DATA, 'potsdam', 'ann_dir', '2_10_0_0_512_512.png'), 0)
    tiles = {'2_10': (img, lab), '2_13': (img.transpose(1, 0, 2), lab.T)}
    files = {'rgb': {}, 'label': {}}
    for tile, (rgb, ids) in tiles.items():
        rgb_path = osp.join(root, 'tifs', f'top_potsdam_{tile}_RGB.tif')
        lab_path = osp.join(root, 'tifs', f'top_potsdam_{tile}_label.tif')
        _rgb_write(rgb_path, rgb)
        _rgb_write(lab_path, POTSDAM_COLORS[ids])
        files['rgb'][osp.basename(rgb_path)] = rgb_path
        files['label'][osp.basename(lab_path)] = lab_path
    raw = osp.join(root, 'potsdam_raw')
    _zip(osp.join(raw, '2_Ortho_RGB.zip'), files['rgb'])
    _zip(osp.join(raw, '5_Labels_all.zip'), files['label'])
    return raw


def make_isaid_raw(root):
    """iSAID zips: the DOTA patch as P2805 (train), flipped as P2806 (val/test)."""
    img = cv2.imread(osp.join(DEMO_DATA, 'dota', 'images', 'P2805__1024__0___0.png'))[..., ::-1]
    boxes = np.loadtxt(osp.join(DEMO_DATA, 'dota', 'labelTxt', 'P2805__1024__0___0.txt'),
                       usecols=range(8)).reshape(-1, 4, 2)
    mask = np.zeros_like(img)
    scale = img.shape[1] / 1024.0  # DOTA coordinates are in the 1024 px patch frame
    cv2.fillPoly(mask, [np.round(b * scale).astype(np.int32) for b in boxes], ISAID_PLANE_RGB)
    samples = {'train': ('P2805', img, mask), 'val': ('P2806', img[:, ::-1], mask[:, ::-1]),
               'test': ('P2807', img[::-1], None)}
    raw = osp.join(root, 'isaid_raw')
    for split, (pid, rgb, sem) in samples.items():
        img_path = osp.join(root, 'files', split, f'{pid}.png')
        _rgb_write(img_path, rgb)
        _zip(osp.join(raw, split, 'images', 'part1.zip'), {f'images/{pid}.png': img_path})
        if sem is not None:
            sem_path = osp.join(root, 'files', split, f'{pid}_instance_color_RGB.png')
            _rgb_write(sem_path, sem)
            _zip(osp.join(raw, split, 'Semantic_masks', 'images.zip'),
                 {f'images/{pid}_instance_color_RGB.png': sem_path})
    return raw


def make_air_polsar_raw(root, seed=0):
    """AIR-PolSAR-Seg patches (512 px): train/1, train/2, test/3."""
    from rsvheat_mm.datasets.air_polsar_seg import AIR_POLSAR_SEG_PALETTE
    colours = np.array(AIR_POLSAR_SEG_PALETTE + [[0, 0, 0]] * (256 - 6), np.uint8)
    colours[255] = 0  # unlabeled: black
    img, lab = loveda(1)
    rng = np.random.default_rng(seed)
    raw = osp.join(root, 'AIR-PolSAR-Seg')
    crops = {('train', '1'): (0, 0), ('train', '2'): (0, 512), ('test', '3'): (512, 0)}
    gains = dict(HH=1.0, HV=0.2, VH=0.2, VV=0.8)
    for (split, pid), (y, x) in crops.items():
        rgb, ids = img[y:y + 512, x:x + 512], lab[y:y + 512, x:x + 512]
        folder = osp.join(raw, split)
        os.makedirs(folder, exist_ok=True)
        for pol, gain in gains.items():
            amp = np.sqrt(speckled_power(rgb, rng, gain=gain))
            tifffile.imwrite(osp.join(folder, f'{pid}_{pol}.tiff'),
                             np.clip(amp * 255, 0, 255).astype(np.uint8))
        _rgb_write(osp.join(folder, f'{pid}_gt.png'), colours[LOVEDA_TO_AIR[ids]])
    return raw


def make_whu_opt_sar_raw(root, size=512, seed=0):
    """WHU-OPT-SAR scenes from LoveDA tiles 0 and 2 (resized to ``size``)."""
    rng = np.random.default_rng(seed)
    raw = osp.join(root, 'WHU-OPT-SAR')
    for sub in ('optical', 'sar', 'lbl'):
        os.makedirs(osp.join(raw, sub), exist_ok=True)
    for index, scene in ((0, 'NH49E001013'), (2, 'NH49E009013')):
        rgb, ids = loveda(index, size)
        optical = np.concatenate([rgb, rgb[..., 1:2]], axis=2)  # R, G, B, "NIR"
        tifffile.imwrite(osp.join(raw, 'optical', f'{scene}.tif'), optical,
                         photometric='minisblack', planarconfig='contig')
        tifffile.imwrite(osp.join(raw, 'sar', f'{scene}.tif'),
                         to_db_uint8(speckled_power(rgb, rng)))
        tifffile.imwrite(osp.join(raw, 'lbl', f'{scene}.tif'), LOVEDA_TO_WHU[ids])
    return raw
