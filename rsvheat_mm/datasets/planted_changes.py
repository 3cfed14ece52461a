"""Change-detection pairs with known, planted changes, made from real imagery.

No real bi-temporal pair is bundled with the repository, so tests and the
demo build them from the real tiles in ``demo/data`` (see
``demo/data/SOURCES.md``):

* **date A** is a real image (LoveDA tile, RS-vHeat sample scene, DOTA scene);
* **date B** is the same image after a small random registration error
  (sub-pixel shift, rotation and scale: co-registration is never perfect)
  with **planted changes**:

  - *objects*: real building instances cut out (with their label masks) of
    other real labelled images -- LoveDA ``building`` (0.3 m), ISPRS
    Potsdam/Vaihingen ``building`` rescaled from 5/9 cm to about 0.3 m --
    randomly rotated by multiples of 90 degrees, flipped and rescaled, and
    pasted (new construction);
  - *regions*: irregular blobs filled with real texture from another image
    (land-cover change);

  and then a random photometric change of the whole date-B image (channel
  gains, gamma, offset, blur, sensor noise), so that "unchanged" pixels are
  never bit-identical;
* with probability ``swap_prob`` A and B are exchanged, so that vanished
  objects (demolition) occur as well;
* the **label** is exactly the set of pasted pixels, written 0/255 as in
  LEVIR-CD.

:func:`make_planted_change_dataset` writes such pairs in the LEVIR-CD layout
(``<split>/A``, ``<split>/B``, ``<split>/label``) with a
``planted_changes.json`` that records every planted item.
"""
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import mmcv
import mmengine
import numpy as np
from scipy import ndimage

DEMO_DATA = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
                     'demo', 'data')

# Real labelled images whose buildings are cut out as change objects:
# (image, label, building label values, scale to about 0.3 m GSD).
BUILDING_SOURCES = {
    'loveda0': ('loveda/img_dir/0.png', 'loveda/ann_dir/0.png', (2, ), 1.0),
    'loveda1': ('loveda/img_dir/1.png', 'loveda/ann_dir/1.png', (2, ), 1.0),
    'potsdam': ('potsdam/img_dir/2_10_0_0_512_512.png',
                'potsdam/ann_dir/2_10_0_0_512_512.png', (2, ), 0.05 / 0.3),
    'vaihingen': ('vaihingen/img_dir/area1_0_0_512_512.png',
                  'vaihingen/ann_dir/area1_0_0_512_512.png', (2, ), 0.09 / 0.3),
}

# Default splits: disjoint base images and disjoint object sources between
# train and val/test, so evaluation never sees a training object.
DEFAULT_SPLITS = {
    'train': dict(bases=['loveda/img_dir/0.png', 'loveda/img_dir/1.png'] +
                  [f'scenes/{i}.png' for i in range(1, 9)],
                  objects=['loveda0', 'vaihingen'], pairs_per_base=1),
    'val': dict(bases=['loveda/img_dir/2.png'], objects=['loveda1', 'potsdam'],
                textures=['dota_scene/dota_demo.jpg'], pairs_per_base=1),
    'test': dict(bases=['loveda/img_dir/2.png'], objects=['loveda1', 'potsdam'],
                 textures=['dota_scene/dota_demo.jpg'], pairs_per_base=1),
}


@dataclass
class ChangeObject:
    """A real object to plant: pixels (H, W, 3) and its mask (H, W) bool."""
    patch: np.ndarray
    mask: np.ndarray
    source: str


def read_rgb(path: str) -> np.ndarray:
    """Read an image as 3-channel BGR uint8 (alpha dropped)."""
    img = mmcv.imread(path, flag='color')
    if img is None:
        raise FileNotFoundError(f'could not read image {path}')
    return img


def extract_objects(image: np.ndarray, label: np.ndarray, values: Sequence[int],
                    scale: float = 1.0, min_area: int = 40, dilate: int = 1,
                    source: str = '') -> List[ChangeObject]:
    """Cut the connected components of ``label in values`` out of ``image``.

    Args:
        image (ndarray): (H, W, 3) image.
        label (ndarray): (H, W) label map of ``image``.
        values (Sequence[int]): Label values of the object class.
        scale (float): Resample image and label by this factor first (GSD
            matching). Defaults to 1.
        min_area (int): Smallest component (pixels, after scaling) kept.
        dilate (int): Grow masks by this many pixels, so the object's edge
            pixels travel with it. Defaults to 1.
        source (str): Name recorded with each object.
    """
    if image.shape[:2] != label.shape[:2]:
        raise ValueError(f'{source}: image {image.shape[:2]} and label {label.shape[:2]} '
                         'differ in size')
    mask = np.isin(label, values)
    if scale != 1.0:
        h, w = label.shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = mmcv.imresize(image, size, interpolation='area')
        mask = mmcv.imresize(mask.astype(np.uint8), size, interpolation='nearest') > 0
    if dilate > 0:
        mask = ndimage.binary_dilation(mask, iterations=dilate)
    comps, n = ndimage.label(mask)
    objects = []
    for i, sl in enumerate(ndimage.find_objects(comps), start=1):
        comp = comps[sl] == i
        if comp.sum() >= min_area:
            objects.append(ChangeObject(image[sl].copy(), comp, source))
    return objects


def load_objects(names: Sequence[str], demo_root: str = DEMO_DATA) -> List[ChangeObject]:
    """Building objects of the :data:`BUILDING_SOURCES` named in ``names``."""
    objects = []
    for name in names:
        if name not in BUILDING_SOURCES:
            raise KeyError(f'unknown object source {name!r}; known: {sorted(BUILDING_SOURCES)}')
        img_path, label_path, values, scale = BUILDING_SOURCES[name]
        image = read_rgb(osp.join(demo_root, img_path))
        label = mmcv.imread(osp.join(demo_root, label_path), flag='unchanged')
        if label is None:
            raise FileNotFoundError(f'could not read label {osp.join(demo_root, label_path)}')
        objects += extract_objects(image, label, values, scale=scale, source=name)
    if not objects:
        raise ValueError(f'no objects found in sources {list(names)}')
    return objects


def _registration_jitter(img: np.ndarray, rng: np.random.Generator, max_shift: float,
                         max_rotation: float, max_scale: float) -> Tuple[np.ndarray, dict]:
    h, w = img.shape[:2]
    angle = rng.uniform(-max_rotation, max_rotation)
    scale = 1 + rng.uniform(-max_scale, max_scale)
    shift = rng.uniform(-max_shift, max_shift, size=2)
    mat = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    mat[:, 2] += shift
    out = cv2.warpAffine(img, mat, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT_101)
    return out, dict(angle=angle, scale=scale, shift=shift.tolist())


def _photometric(img: np.ndarray, rng: np.random.Generator,
                 strength: float) -> Tuple[np.ndarray, dict]:
    x = img.astype(np.float32) / 255.
    gains = 1 + rng.uniform(-0.12, 0.12, size=3) * strength
    gamma = 1 + rng.uniform(-0.15, 0.15) * strength
    offset = rng.uniform(-0.04, 0.04) * strength
    x = np.clip(x * gains, 0, 1) ** gamma + offset
    sigma_blur = rng.uniform(0.3, 0.8) * strength
    if sigma_blur > 0:
        x = cv2.GaussianBlur(x, (0, 0), sigma_blur)
    noise = rng.uniform(0.004, 0.012) * strength
    x = x + rng.normal(0, noise, size=x.shape).astype(np.float32)
    out = np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)
    return out, dict(gains=gains.tolist(), gamma=gamma, offset=offset,
                     blur_sigma=sigma_blur, noise_sigma=noise)


def _blob(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An irregular, connected blob filling roughly half of an (h, w) box."""
    noise = rng.random((h, w)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), max(h, w) / 6)
    yy, xx = np.mgrid[0:h, 0:w]
    # Bias towards the centre so the blob does not stick to the box edges.
    centre = 1 - (((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2)
    score = smooth / (smooth.std() + 1e-6) + 2 * centre
    blob = score > np.quantile(score, 0.5)
    comps, n = ndimage.label(blob)
    if n > 1:
        sizes = ndimage.sum(blob, comps, range(1, n + 1))
        blob = comps == (int(np.argmax(sizes)) + 1)
    return ndimage.binary_fill_holes(blob)


def plant_changes(image: np.ndarray,
                  objects: Sequence[ChangeObject],
                  textures: Sequence[np.ndarray],
                  rng: np.random.Generator,
                  objects_per_mpix: float = 16.,
                  regions_per_mpix: float = 3.,
                  region_size: Tuple[int, int] = (48, 128),
                  min_region_contrast: float = 30.,
                  max_shift: float = 1.0,
                  max_rotation: float = 0.3,
                  max_scale: float = 0.003,
                  photometric_strength: float = 1.0,
                  swap_prob: float = 0.5) -> Tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Make one ``(img_a, img_b, label, record)`` pair from a real ``image``.

    Args:
        image (ndarray): (H, W, 3) uint8 real image (date A).
        objects (Sequence[ChangeObject]): Objects to plant.
        textures (Sequence[ndarray]): Real images to take region fills from.
        rng (np.random.Generator): Random generator (reproducibility).
        objects_per_mpix (float): Mean planted objects per megapixel.
        regions_per_mpix (float): Mean planted regions per megapixel.
        region_size (tuple[int, int]): Min/max side of a region's box.
        min_region_contrast (float): Min mean absolute grey-level difference
            between a region's fill and what it covers (else redrawn, and the
            region dropped after 20 tries).
        max_shift (float): Max registration shift (pixels).
        max_rotation (float): Max registration rotation (degrees).
        max_scale (float): Max registration scale error (fraction).
        photometric_strength (float): 0 disables the photometric change.
        swap_prob (float): Probability of exchanging A and B.

    Returns:
        tuple: ``img_a``, ``img_b`` (uint8 (H, W, 3)), ``label`` (uint8
        (H, W), 1 = changed) and a JSON-able record of what was planted.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'plant_changes needs an (H, W, 3) uint8 image, got '
                         f'{image.shape} {image.dtype}')
    h, w = image.shape[:2]
    mpix = h * w / 1e6
    img_b, reg = _registration_jitter(image, rng, max_shift, max_rotation, max_scale)
    label = np.zeros((h, w), np.uint8)
    items = []

    for _ in range(rng.poisson(objects_per_mpix * mpix) + 1):
        obj = objects[rng.integers(len(objects))]
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        scale = float(rng.uniform(0.8, 1.25))
        patch, mask = np.rot90(obj.patch, k), np.rot90(obj.mask, k)
        if flip:
            patch, mask = patch[:, ::-1], mask[:, ::-1]
        ph, pw = max(1, round(patch.shape[0] * scale)), max(1, round(patch.shape[1] * scale))
        if ph >= h or pw >= w:
            continue
        patch = mmcv.imresize(np.ascontiguousarray(patch), (pw, ph), interpolation='bilinear')
        mask = mmcv.imresize(np.ascontiguousarray(mask).astype(np.uint8), (pw, ph),
                             interpolation='nearest') > 0
        y, x = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        img_b[y:y + ph, x:x + pw][mask] = patch[mask]
        label[y:y + ph, x:x + pw][mask] = 1
        items.append(dict(type='object', source=obj.source, bbox=[x, y, x + pw, y + ph],
                          pixels=int(mask.sum())))

    lo, hi = region_size
    for _ in range(rng.poisson(regions_per_mpix * mpix) + 1):
        bh, bw = int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
        if bh >= h or bw >= w:
            continue
        blob = _blob(rng, bh, bw)
        y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        target = img_b[y:y + bh, x:x + bw]
        # A land-cover change must look like one: draw fills until one differs
        # clearly (mean |difference| >= min_region_contrast) from what it covers.
        for _try in range(20):
            tex_id = int(rng.integers(len(textures)))
            tex = textures[tex_id]
            if bh >= tex.shape[0] or bw >= tex.shape[1]:
                continue
            ty = int(rng.integers(0, tex.shape[0] - bh + 1))
            tx = int(rng.integers(0, tex.shape[1] - bw + 1))
            fill = tex[ty:ty + bh, tx:tx + bw]
            contrast = np.abs(fill[blob].astype(np.float32) - target[blob]).mean()
            if contrast >= min_region_contrast:
                break
        else:
            continue
        target[blob] = fill[blob]
        label[y:y + bh, x:x + bw][blob] = 1
        items.append(dict(type='region', texture=tex_id, bbox=[x, y, x + bw, y + bh],
                          texture_origin=[tx, ty], contrast=float(contrast),
                          pixels=int(blob.sum())))

    img_b, photo = _photometric(img_b, rng, photometric_strength)
    img_a = image.copy()
    swapped = bool(rng.random() < swap_prob)
    if swapped:
        img_a, img_b = img_b, img_a
    record = dict(registration=reg, photometric=photo, swapped=swapped, planted=items,
                  changed_pixels=int(label.sum()), changed_fraction=float(label.mean()))
    return img_a, img_b, label, record


def make_planted_change_dataset(out_dir: str,
                                splits: Optional[Dict[str, dict]] = None,
                                demo_root: str = DEMO_DATA,
                                seed: int = 0,
                                max_size: Optional[int] = None,
                                **plant_kwargs) -> Dict[str, List[str]]:
    """Write planted-change pairs in the LEVIR-CD layout under ``out_dir``.

    Args:
        out_dir (str): Output root; gets ``<split>/{A,B,label}/<name>.png``
            (labels 0/255) and ``<split>/planted_changes.json``.
        splits (dict, optional): ``{split: dict(bases=[paths relative to
            demo_root], objects=[BUILDING_SOURCES names], textures=[paths],
            pairs_per_base=n)}``; without ``textures`` a pair's regions are
            filled from the split's other bases. Defaults to
            :data:`DEFAULT_SPLITS`.
        demo_root (str): Folder of the bundled real data.
        seed (int): Random seed; the same seed gives the same pairs.
        max_size (int, optional): Centre-crop bases to at most this size
            (smaller, faster fixtures).
        **plant_kwargs: Passed to :func:`plant_changes`.

    Returns:
        dict: Pair names written per split.
    """
    splits = DEFAULT_SPLITS if splits is None else splits
    rng = np.random.default_rng(seed)
    written = {}
    for split, spec in splits.items():
        objects = load_objects(spec['objects'], demo_root)
        bases = [(b, read_rgb(osp.join(demo_root, b))) for b in spec['bases']]
        if max_size:
            cropped = []
            for name, img in bases:
                h, w = img.shape[:2]
                y0, x0 = max(0, (h - max_size) // 2), max(0, (w - max_size) // 2)
                cropped.append((name, img[y0:y0 + max_size, x0:x0 + max_size]))
            bases = cropped
        textures = [read_rgb(osp.join(demo_root, t)) for t in spec.get('textures', [])]
        records, names = {}, []
        for base_name, image in bases:
            for k in range(spec.get('pairs_per_base', 1)):
                stem = osp.splitext(base_name)[0].replace('/img_dir/', '_').replace('/', '_')
                name = f'{stem}_{k}'
                others = textures or [img for _, img in bases if img is not image]
                if not others:
                    raise ValueError(f'split {split!r}: one base and no `textures` to fill '
                                     'planted regions from')
                img_a, img_b, label, record = plant_changes(image, objects, others, rng,
                                                            **plant_kwargs)
                for sub, arr in (('A', img_a), ('B', img_b), ('label', label * 255)):
                    mmcv.imwrite(arr, osp.join(out_dir, split, sub, f'{name}.png'))
                records[name] = dict(base=base_name, objects_from=list(spec['objects']),
                                     **record)
                names.append(name)
        mmengine.dump(dict(seed=seed, demo_root=osp.abspath(demo_root), pairs=records),
                      osp.join(out_dir, split, 'planted_changes.json'), indent=1)
        written[split] = names
    return written
