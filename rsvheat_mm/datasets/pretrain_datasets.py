"""Datasets and loading for RS-vHeat self-supervised pretraining.

* :class:`RSVHeatPairedDataset`: co-registered pairs of two modalities
  (optical + SAR by default), listed by an annotation file or matched by
  file name in two folders.
* :class:`RSVHeatImageFolderDataset`: unlabelled images of one modality
  (a plain folder, searched recursively, or a list file).
* :class:`LoadRSVHeatPretrainImages`: loads a sample's image and, for a
  pair, its partner, with per-modality decoding (RGB optical, one-band SAR,
  any-band TIFF).
* :class:`RSVHeatSARStandIn`: a speckled one-band stand-in partner derived
  from an optical image, for demos and tests on bundled data only.

Every sample carries its ``modality`` (and ``partner_modality``), which the
model uses to pick the backbone stem, so the datasets can be mixed in one
``ConcatDataset``: a batch may hold optical and SAR images, paired and
unpaired. Geometric augmentation of a pair must be shared; wrap it in
mmcv's ``TransformBroadcaster`` (see ``configs/pretrain``).
"""
import os.path as osp
import shlex
from typing import Dict, List, Optional, Sequence, Union

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from mmengine.dataset import BaseDataset
from mmengine.fileio import get, get_text, join_path, list_dir_or_file

from rsvheat_mm.registry import DATASETS, TRANSFORMS

__all__ = [
    'RSVHeatImageFolderDataset', 'RSVHeatPairedDataset',
    'LoadRSVHeatPretrainImages', 'RSVHeatSARStandIn', 'simulate_sar_standin'
]

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def _list_images(folder: str, extensions: Sequence[str], backend_args=None) -> List[str]:
    """Image files under ``folder`` (recursive), relative, sorted."""
    if not osp.isdir(folder) and '://' not in folder:
        raise FileNotFoundError(f'image folder not found: {folder}')
    exts = tuple(e.lower() for e in extensions)
    files = [p for p in list_dir_or_file(folder, list_dir=False, recursive=True,
                                         backend_args=backend_args)
             if p.lower().endswith(exts)]
    return sorted(files)


def _read_list_file(ann_file: str, backend_args=None) -> List[List[str]]:
    """Non-empty, non-comment lines of a list file, split shell-style.

    ``shlex`` splitting lets paths with spaces be quoted.
    """
    rows = []
    for lineno, line in enumerate(get_text(ann_file, backend_args=backend_args).splitlines(), 1):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        try:
            rows.append((lineno, shlex.split(line)))
        except ValueError as e:
            raise ValueError(f'{ann_file}:{lineno}: cannot parse {line!r} ({e})') from None
    return rows


@DATASETS.register_module()
class RSVHeatImageFolderDataset(BaseDataset):
    """Unlabelled images of one modality, for pretraining.

    Lists every image under ``data_root/data_prefix['img_path']``
    (recursively, by extension, case-insensitive) or, when ``ann_file`` is
    given, the paths in it (one per line, relative to the image folder;
    ``#`` comments and blank lines ignored).

    Each item: ``img_path``, ``modality``; ``partner_path`` and
    ``partner_modality`` are None (no contrastive partner).

    Args:
        modality (str): Backbone stem of these images, e.g. ``'optical'``
            or ``'sar'``. Defaults to ``'optical'``.
        ann_file (str): Optional list file. Defaults to ''.
        data_root (str): Root of ``ann_file`` and ``data_prefix``.
        data_prefix (dict): ``img_path``: the image folder. Defaults to
            ``dict(img_path='')``.
        extensions (Sequence[str]): Image extensions when listing a folder.
        backend_args (dict, optional): mmengine file backend arguments.
        **kwargs: Other :class:`mmengine.dataset.BaseDataset` arguments
            (``pipeline``, ``indices``, ``lazy_init``, ...).
    """

    def __init__(self,
                 modality: str = 'optical',
                 ann_file: str = '',
                 data_root: str = '',
                 data_prefix: dict = dict(img_path=''),
                 extensions: Sequence[str] = IMG_EXTENSIONS,
                 backend_args: Optional[dict] = None,
                 **kwargs):
        if not isinstance(modality, str) or not modality:
            raise TypeError(f'{self.__class__.__name__}: modality must be a stem name, '
                            f'got {modality!r}')
        self.modality = modality
        self.extensions = tuple(extensions)
        self.backend_args = backend_args
        super().__init__(ann_file=ann_file, data_root=data_root,
                         data_prefix=dict(data_prefix), **kwargs)

    def load_data_list(self) -> List[dict]:
        img_dir = self.data_prefix.get('img_path', '')
        if self.ann_file:
            rows = _read_list_file(self.ann_file, self.backend_args)
            for lineno, fields in rows:
                if len(fields) != 1:
                    raise ValueError(f'{self.ann_file}:{lineno}: expected one image path, '
                                     f'got {fields}')
            paths = [fields[0] for _, fields in rows]
            source = self.ann_file
        else:
            paths = _list_images(img_dir, self.extensions, self.backend_args)
            source = f'{img_dir} (extensions {self.extensions})'
        if not paths:
            raise FileNotFoundError(f'{self.__class__.__name__}: no images in {source}')
        return [dict(img_path=join_path(img_dir, p) if img_dir else p, modality=self.modality,
                     partner_path=None, partner_modality=None) for p in paths]


@DATASETS.register_module()
class RSVHeatPairedDataset(BaseDataset):
    """Co-registered image pairs of two modalities (optical + SAR), for
    pretraining with the cross-modal contrastive loss.

    Three ways to list the pairs:

    * ``ann_file`` ending in ``.txt`` (or any non-mmengine list file): one
      pair per line, ``<primary path> <partner path>``, relative to
      ``data_prefix['img_path']`` and ``data_prefix['partner_path']``
      (quote paths with spaces). A line with a single path is an unpaired
      primary image (the contrastive term skips it).
    * ``ann_file`` ending in ``.json``/``.yaml``/``.pkl``: mmengine's
      annotation format (``metainfo`` + ``data_list``), each item with
      ``img_path`` and optionally ``partner_path`` (and ``modality`` /
      ``partner_modality`` overriding the dataset's).
    * no ``ann_file``: the files of the two folders are matched by file
      name without extension (``a/x.png`` <-> ``a/x.tif``). Unmatched files
      raise an error naming them unless ``allow_unpaired=True``, which keeps
      unmatched primary images as unpaired samples.

    Each item: ``img_path``, ``modality``, ``partner_path``,
    ``partner_modality`` (the two last None when unpaired).

    Args:
        modality (str): Stem of the primary images. Defaults to
            ``'optical'``.
        partner_modality (str): Stem of the partner images. Defaults to
            ``'sar'``.
        ann_file (str): See above. Defaults to ''.
        data_root (str): Root of ``ann_file`` and ``data_prefix``.
        data_prefix (dict): ``img_path`` and ``partner_path`` folders.
            Defaults to ``dict(img_path='optical', partner_path='sar')``.
        allow_unpaired (bool): See above. Defaults to False.
        extensions (Sequence[str]): Image extensions when matching folders.
        backend_args (dict, optional): mmengine file backend arguments.
        **kwargs: Other :class:`mmengine.dataset.BaseDataset` arguments.
    """

    def __init__(self,
                 modality: str = 'optical',
                 partner_modality: str = 'sar',
                 ann_file: str = '',
                 data_root: str = '',
                 data_prefix: dict = dict(img_path='optical', partner_path='sar'),
                 allow_unpaired: bool = False,
                 extensions: Sequence[str] = IMG_EXTENSIONS,
                 backend_args: Optional[dict] = None,
                 **kwargs):
        for name, value in (('modality', modality), ('partner_modality', partner_modality)):
            if not isinstance(value, str) or not value:
                raise TypeError(f'{self.__class__.__name__}: {name} must be a stem name, '
                                f'got {value!r}')
        data_prefix = dict(data_prefix)
        missing = {'img_path', 'partner_path'} - set(data_prefix)
        if missing:
            raise KeyError(f'{self.__class__.__name__}: data_prefix needs '
                           f'{sorted(missing)}, got {data_prefix}')
        self.modality = modality
        self.partner_modality = partner_modality
        self.allow_unpaired = allow_unpaired
        self.extensions = tuple(extensions)
        self.backend_args = backend_args
        super().__init__(ann_file=ann_file, data_root=data_root, data_prefix=data_prefix,
                         **kwargs)

    # -- listing ---------------------------------------------------------------
    def _item(self, img_path, partner_path, modality=None, partner_modality=None):
        img_dir, partner_dir = self.data_prefix['img_path'], self.data_prefix['partner_path']
        item = dict(img_path=join_path(img_dir, img_path) if img_dir else img_path,
                    modality=modality or self.modality, partner_path=None,
                    partner_modality=None)
        if partner_path:
            item['partner_path'] = (join_path(partner_dir, partner_path)
                                    if partner_dir else partner_path)
            item['partner_modality'] = partner_modality or self.partner_modality
        return item

    def load_data_list(self) -> List[dict]:
        if self.ann_file and not self.ann_file.lower().endswith(
                ('.json', '.yaml', '.yml', '.pkl', '.pickle')):
            data_list = []
            for lineno, fields in _read_list_file(self.ann_file, self.backend_args):
                if len(fields) not in (1, 2):
                    raise ValueError(f'{self.ann_file}:{lineno}: expected "<image> [<partner>]", '
                                     f'got {len(fields)} fields {fields}')
                data_list.append(self._item(fields[0], fields[1] if len(fields) == 2 else None))
        elif self.ann_file:
            data_list = super().load_data_list()  # mmengine format -> parse_data_info
        else:
            data_list = self._match_folders()
        if not data_list:
            raise FileNotFoundError(f'{self.__class__.__name__}: no samples in '
                                    f'{self.ann_file or self.data_prefix}')
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> dict:
        if 'img_path' not in raw_data_info:
            raise KeyError(f'{self.ann_file}: data_list item without `img_path`: '
                           f'{raw_data_info}')
        info = dict(raw_data_info)
        info.update(self._item(raw_data_info['img_path'], raw_data_info.get('partner_path'),
                               raw_data_info.get('modality'),
                               raw_data_info.get('partner_modality')))
        return info

    def _match_folders(self) -> List[dict]:
        img_dir, partner_dir = self.data_prefix['img_path'], self.data_prefix['partner_path']
        images = _list_images(img_dir, self.extensions, self.backend_args)
        partners = _list_images(partner_dir, self.extensions, self.backend_args)
        by_stem: Dict[str, str] = {}
        for p in partners:
            stem = osp.splitext(p)[0]
            if stem in by_stem:
                raise ValueError(f'{partner_dir}: two partner files for {stem!r}: '
                                 f'{by_stem[stem]} and {p}')
            by_stem[stem] = p
        data_list, unmatched = [], []
        for p in images:
            partner = by_stem.pop(osp.splitext(p)[0], None)
            if partner is None:
                unmatched.append(p)
            data_list.append(self._item(p, partner))
        if (unmatched or by_stem) and not self.allow_unpaired:
            raise ValueError(
                f'{self.__class__.__name__}: {len(unmatched)} file(s) in {img_dir} without a '
                f'partner in {partner_dir} (first: {unmatched[:3]}) and {len(by_stem)} '
                f'partner(s) without an image (first: {sorted(by_stem)[:3]}); pairs are '
                'matched by file name without extension. Set allow_unpaired=True to '
                'keep unmatched images as unpaired samples.')
        return data_list


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------
def _per_modality(value, modality, default):
    if isinstance(value, dict):
        return value.get(modality, default)
    return value


@TRANSFORMS.register_module()
class LoadRSVHeatPretrainImages(BaseTransform):
    """Load a pretraining sample: its image and, for a pair, its partner.

    **Required Keys:** ``img_path``, ``modality``; optionally
    ``partner_path``, ``partner_modality``.

    **Added Keys:** ``img`` (float32 ``(H, W, C)``), ``img_shape``,
    ``ori_shape``; for a pair ``partner_img`` (float32
    ``(H, W, C_partner)``).

    Args:
        color_type (str | dict): mmcv decode flag, per modality when a dict
            (modalities not listed: ``'unchanged'``, which keeps the
            decoder's band order, e.g. OpenCV's BGR(A) for PNG). Defaults to
            ``dict(optical='color', sar='grayscale')``: 3-band RGB optical
            (alpha dropped) and 1-band SAR.
        imdecode_backend (str | dict): mmcv decode backend, per modality
            when a dict (not listed: ``'cv2'``); ``'tifffile'`` reads
            multiband TIFFs. Defaults to ``'cv2'``.
        channel_order (str): Order of 3-band ``'color'`` images. Defaults to
            ``'rgb'`` (the order of the ImageNet statistics and of the
            downstream configs after their ``bgr_to_rgb``).
        resize_partner (bool): A co-registered partner must have the image's
            height and width; False (default) raises an error naming both
            files, True resizes the partner (bilinear) to the image's size,
            for pairs co-registered at different pixel spacings.
        backend_args (dict, optional): mmengine file backend arguments.
    """

    def __init__(self,
                 color_type: Union[str, dict] = dict(optical='color', sar='grayscale'),
                 imdecode_backend: Union[str, dict] = 'cv2',
                 channel_order: str = 'rgb',
                 resize_partner: bool = False,
                 backend_args: Optional[dict] = None):
        self.color_type = color_type
        self.imdecode_backend = imdecode_backend
        self.channel_order = channel_order
        self.resize_partner = resize_partner
        self.backend_args = backend_args

    def _load(self, path: str, modality: str) -> np.ndarray:
        try:
            content = get(path, backend_args=self.backend_args)
        except FileNotFoundError:
            raise FileNotFoundError(f'{self.__class__.__name__}: {modality} image not '
                                    f'found: {path}') from None
        img = mmcv.imfrombytes(content,
                               flag=_per_modality(self.color_type, modality, 'unchanged'),
                               channel_order=self.channel_order,
                               backend=_per_modality(self.imdecode_backend, modality, 'cv2'))
        if img is None or img.size == 0:
            raise ValueError(f'{self.__class__.__name__}: cannot decode {path}')
        if img.ndim == 2:
            img = img[..., None]
        if img.ndim != 3:
            raise ValueError(f'{self.__class__.__name__}: {path} decodes to shape '
                             f'{img.shape}, expected (H, W) or (H, W, C)')
        # float32 from the start: the partner of a pair may have another
        # dtype (uint16, float dB) and the frequency views are float anyway.
        return img.astype(np.float32)

    def transform(self, results: dict) -> dict:
        for key in ('img_path', 'modality'):
            if results.get(key) is None:
                raise KeyError(f'{self.__class__.__name__}: sample without `{key}`: '
                               f'{results}')
        img = self._load(results['img_path'], results['modality'])
        results['img'] = img
        results['img_shape'] = results['ori_shape'] = img.shape[:2]
        if results.get('partner_path'):
            if results.get('partner_modality') is None:
                raise KeyError(f'{self.__class__.__name__}: {results["partner_path"]} has '
                               'no `partner_modality`')
            partner = self._load(results['partner_path'], results['partner_modality'])
            if partner.shape[:2] != img.shape[:2]:
                if not self.resize_partner:
                    raise ValueError(
                        f'{self.__class__.__name__}: co-registered pair of different sizes: '
                        f'{results["img_path"]} {img.shape[:2]} vs {results["partner_path"]} '
                        f'{partner.shape[:2]}; set resize_partner=True to resample it.')
                partner = mmcv.imresize(partner, (img.shape[1], img.shape[0]),
                                        interpolation='bilinear')
                if partner.ndim == 2:
                    partner = partner[..., None]
            results['partner_img'] = partner
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(color_type={self.color_type!r}, '
                f'imdecode_backend={self.imdecode_backend!r}, '
                f'channel_order={self.channel_order!r}, resize_partner={self.resize_partner})')


# ---------------------------------------------------------------------------
# SAR stand-in (demos / tests on bundled data only)
# ---------------------------------------------------------------------------
def simulate_sar_standin(img: np.ndarray,
                         looks: float = 4.,
                         rng: Optional[np.random.Generator] = None,
                         db_range: Sequence[float] = (-30., 5.)) -> np.ndarray:
    """A one-band, speckled "SAR-like" stand-in derived from an optical image.

    NOT a SAR simulator (no geometry, no backscatter physics): the luminance
    is taken as amplitude, squared to an intensity, multiplied by fully
    developed ``looks``-look speckle (Gamma(L, 1/L), mean 1, multiplicative
    as in SAR), converted to dB and mapped linearly from ``db_range`` to
    0..255. It gives a co-registered single-band partner with SAR-like
    statistics, so the paired code path and the contrastive loss can be
    exercised on the bundled optical samples, which include no SAR image.

    Args:
        img (np.ndarray): ``(H, W)`` or ``(H, W, C)`` optical image, RGB
            order for 3+ bands, 8-bit range (larger ranges are scaled by
            their maximum).
        looks (float): Number of looks (speckle strength; more = weaker).
        rng (np.random.Generator, optional): Random source (default: a new
            generator from numpy's global state, so dataloader seeding
            applies).
        db_range (Sequence[float]): dB mapped to 0 and 255.

    Returns:
        np.ndarray: float32 ``(H, W)`` in ``[0, 255]``.
    """
    x = np.asarray(img, dtype=np.float64)
    if x.ndim == 3 and x.shape[2] >= 3:
        lum = x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
    else:
        lum = x.reshape(x.shape[0], x.shape[1], -1).mean(axis=2)
    peak = 255.0 if lum.max() <= 255 else float(lum.max())
    amplitude = np.clip(lum / peak, 1e-3, None)
    if rng is None:
        rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))
    speckle = rng.gamma(shape=looks, scale=1.0 / looks, size=amplitude.shape)
    db = 10.0 * np.log10(amplitude**2 * speckle + 1e-6)
    lo, hi = db_range
    return (np.clip((db - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.float32)


@TRANSFORMS.register_module()
class RSVHeatSARStandIn(BaseTransform):
    """Give an optical sample a stand-in SAR partner (demos/tests only).

    The bundled sample data contain no SAR image; this derives a speckled
    one-band partner from the (already augmented, hence co-registered)
    optical image with :func:`simulate_sar_standin`. Use real co-registered
    pairs (:class:`RSVHeatPairedDataset`) for actual pretraining.

    **Required Keys:** ``img``. **Added Keys:** ``partner_img`` (float32
    ``(H, W, 1)``), ``partner_modality``, ``partner_path`` (None).

    Args:
        prob (float): Fraction of samples that get a partner; the others
            stay unpaired, which yields mixed batches. Defaults to 1.
        looks (float): Speckle looks. Defaults to 4.
        partner_modality (str): Defaults to ``'sar'``.
    """

    def __init__(self, prob: float = 1.0, looks: float = 4., partner_modality: str = 'sar'):
        if not 0 <= prob <= 1:
            raise ValueError(f'{self.__class__.__name__}: prob must be in [0, 1], got {prob}')
        self.prob = prob
        self.looks = looks
        self.partner_modality = partner_modality

    @cache_randomness
    def _paired(self) -> bool:
        return bool(np.random.rand() < self.prob)

    def transform(self, results: dict) -> dict:
        if results.get('partner_img') is not None or not self._paired():
            return results
        results['partner_img'] = simulate_sar_standin(results['img'], self.looks)[..., None]
        results['partner_modality'] = self.partner_modality
        results['partner_path'] = None
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(prob={self.prob}, looks={self.looks}, '
                f'partner_modality={self.partner_modality!r})')
