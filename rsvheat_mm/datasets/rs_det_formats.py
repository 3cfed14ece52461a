"""On-disk annotation formats of the remote-sensing detection datasets.

Readers and writers (toolbox-free: numpy + ElementTree) for

* DIOR horizontal boxes -- VOC-style XML with ``<bndbox>``
  (``Annotations/Horizontal Bounding Boxes/*.xml``), and DIOR-R oriented
  boxes -- the same XML with ``<robndbox>`` corner points
  (``Annotations/Oriented Bounding Boxes/*.xml``);
* SAR-AIRcraft-1.0 -- VOC-style XML (``Annotations/*.xml``);
* FAIR1M-1.0/2.0 -- its own XML (``labelXml/*.xml``): ``<objects>/<object>``
  with ``<possibleresult><name>`` and five ``<point>x,y</point>`` (a closed
  quadrilateral, pixel coordinates); the same schema, with a score in
  ``<probability>``, is the submission format of the FAIR1M test server;
* DOTA label files -- one object per line, ``x1 y1 ... x4 y4 class
  difficulty``, optional ``imagesource:``/``gsd:`` header lines; and DOTA
  "Task1" result files (``Task1_<class>.txt``: ``image score x1 y1 ... y4``).

Every writer goes through :func:`rsvheat_mm.utils.atomic_write`. Bad input
raises :class:`AnnotationFormatError`, naming the file and the field.
"""
import os
import os.path as osp
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Sequence

import numpy as np

from rsvheat_mm.utils.fileio import atomic_write

__all__ = [
    'DIOR_CLASSES', 'SAR_AIRCRAFT_CLASSES', 'FAIR1M_CLASSES', 'FAIR1M_DOTA_CLASSES',
    'AnnotationFormatError', 'match_class', 'fair1m_to_dota_name', 'dota_to_fair1m_name',
    'poly_to_hbb', 'hbb_to_poly', 'read_voc_xml', 'write_voc_xml', 'read_fair1m_xml',
    'write_fair1m_xml', 'read_dota_txt', 'write_dota_txt', 'read_dota_task1',
    'write_dota_task1', 'dior_obb_to_hbb', 'voc_xml_to_dota', 'fair1m_xml_to_dota',
    'task1_to_fair1m_xml'
]

# DIOR / DIOR-R, in mmrotate's DIORDataset order. DIOR's own files spell two
# names 'Expressway-Service-area' / 'Expressway-toll-station': names are
# matched case-insensitively (see ``match_class``).
DIOR_CLASSES = (
    'airplane', 'airport', 'baseballfield', 'basketballcourt', 'bridge',
    'chimney', 'expressway-service-area', 'expressway-toll-station', 'dam',
    'golffield', 'groundtrackfield', 'harbor', 'overpass', 'ship', 'stadium',
    'storagetank', 'tenniscourt', 'trainstation', 'vehicle', 'windmill')

# SAR-AIRcraft-1.0 (Wang et al., Journal of Radars 2023), 7 categories.
SAR_AIRCRAFT_CLASSES = ('A220', 'A320/321', 'A330', 'ARJ21', 'Boeing737',
                        'Boeing787', 'other')

# FAIR1M (1.0 and 2.0 share the 37 fine-grained categories), as spelled in
# its XML files: 11 airplanes, 9 ships, 10 vehicles, 4 courts, 3 roads.
FAIR1M_CLASSES = (
    'Boeing737', 'Boeing747', 'Boeing777', 'Boeing787', 'C919', 'A220',
    'A321', 'A330', 'A350', 'ARJ21', 'other-airplane',
    'Passenger Ship', 'Motorboat', 'Fishing Boat', 'Tugboat',
    'Engineering Ship', 'Liquid Cargo Ship', 'Dry Cargo Ship', 'Warship',
    'other-ship',
    'Small Car', 'Bus', 'Cargo Truck', 'Dump Truck', 'Van', 'Trailer',
    'Tractor', 'Excavator', 'Truck Tractor', 'other-vehicle',
    'Basketball Court', 'Tennis Court', 'Football Field', 'Baseball Field',
    'Intersection', 'Roundabout', 'Bridge')


def fair1m_to_dota_name(name: str) -> str:
    """DOTA label files are whitespace-separated: 'Small Car' -> 'Small_Car'."""
    return name.strip().replace(' ', '_')


def dota_to_fair1m_name(name: str) -> str:
    """Inverse of :func:`fair1m_to_dota_name` for the 37 FAIR1M names."""
    return _FAIR1M_FROM_DOTA.get(name, name.replace('_', ' '))


# The class names as they appear in the converted DOTA label files.
FAIR1M_DOTA_CLASSES = tuple(fair1m_to_dota_name(c) for c in FAIR1M_CLASSES)
_FAIR1M_FROM_DOTA = dict(zip(FAIR1M_DOTA_CLASSES, FAIR1M_CLASSES))


class AnnotationFormatError(ValueError):
    """An annotation file does not follow its dataset's format."""


def _fail(path, msg):
    raise AnnotationFormatError(f'{path}: {msg}')


def match_class(name: str, classes: Sequence[str], path: str = '?',
                aliases: Optional[Dict[str, str]] = None) -> int:
    """Index of ``name`` in ``classes`` (case-insensitive, after aliases).

    Raises:
        AnnotationFormatError: the name is not a class of the dataset.
    """
    lookup = {c.lower(): i for i, c in enumerate(classes)}
    key = (aliases or {}).get(name, name).strip().lower()
    if key not in lookup:
        _fail(path, f'<name> {name!r} is not one of the {len(classes)} '
              f'classes {tuple(classes)}')
    return lookup[key]


# -- geometry ----------------------------------------------------------------
def poly_to_hbb(poly) -> np.ndarray:
    """(..., 8) quadrilaterals -> (..., 4) enclosing ``x1 y1 x2 y2`` boxes."""
    pts = np.asarray(poly, dtype=np.float64).reshape(*np.shape(poly)[:-1], 4, 2)
    return np.concatenate([pts.min(-2), pts.max(-2)], axis=-1)


def hbb_to_poly(box) -> np.ndarray:
    """(..., 4) ``x1 y1 x2 y2`` -> (..., 8) clockwise corners from top-left."""
    b = np.asarray(box, dtype=np.float64)
    x1, y1, x2, y2 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack([x1, y1, x2, y1, x2, y2, x1, y2], axis=-1)


# -- XML helpers -------------------------------------------------------------
def _parse_xml(path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as e:
        _fail(path, f'not well-formed XML ({e})')


def _text(node: ET.Element, tag: str, path, required: bool = True,
          where: str = '') -> Optional[str]:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        if required:
            _fail(path, f'missing <{tag}>{where}')
        return None
    return child.text.strip()


def _number(node, tag, path, where='') -> float:
    text = _text(node, tag, path, where=where)
    try:
        return float(text)
    except ValueError:
        _fail(path, f'<{tag}>{where} is not a number: {text!r}')


def _sub(parent, tag, text=None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = str(text)
    return el


def _write_xml(root: ET.Element, path) -> None:
    ET.indent(root, space='\t')
    data = ET.tostring(root, encoding='utf-8', xml_declaration=True)
    atomic_write(data + b'\n', path)


def _fmt(v: float) -> str:
    """Integers stay integers (DIOR's files use integer pixels)."""
    v = float(v)
    return str(int(v)) if v.is_integer() else f'{v:.6g}'


# -- VOC-style XML (DIOR, DIOR-R, SAR-AIRcraft-1.0) ---------------------------
_ROBNDBOX_TAGS = ('x_left_top', 'y_left_top', 'x_right_top', 'y_right_top',
                  'x_right_bottom', 'y_right_bottom', 'x_left_bottom',
                  'y_left_bottom')


def read_voc_xml(path: str) -> dict:
    """Read a VOC-style XML of DIOR, DIOR-R or SAR-AIRcraft-1.0.

    Returns:
        dict: ``filename``, ``width``, ``height``, ``depth`` (None where the
        file has no ``<size>``) and ``objects``: dicts with ``name``,
        ``difficult``, ``truncated``, ``bbox`` (x1, y1, x2, y2) and ``poly``
        (8 corner coordinates, only for DIOR-R ``<robndbox>``; the ``bbox``
        is then its enclosing box).
    """
    root = _parse_xml(path)
    if root.tag != 'annotation':
        _fail(path, f'root element is <{root.tag}>, expected <annotation>')
    out = dict(filename=_text(root, 'filename', path, required=False),
               width=None, height=None, depth=None, objects=[])
    size = root.find('size')
    if size is not None:
        out['width'] = int(_number(size, 'width', path, ' in <size>'))
        out['height'] = int(_number(size, 'height', path, ' in <size>'))
        depth = _text(size, 'depth', path, required=False)
        out['depth'] = int(float(depth)) if depth is not None else None
    for k, obj in enumerate(root.findall('object')):
        where = f' in <object> #{k}'
        rec = dict(name=_text(obj, 'name', path, where=where), poly=None)
        for flag in ('difficult', 'truncated'):
            val = _text(obj, flag, path, required=False)
            rec[flag] = int(float(val)) if val is not None else 0
        box, rbox = obj.find('bndbox'), obj.find('robndbox')
        if box is not None:
            rec['bbox'] = [_number(box, t, path, where)
                           for t in ('xmin', 'ymin', 'xmax', 'ymax')]
        elif rbox is not None:
            rec['poly'] = [_number(rbox, t, path, where) for t in _ROBNDBOX_TAGS]
            rec['bbox'] = poly_to_hbb(rec['poly']).tolist()
        else:
            _fail(path, f'neither <bndbox> nor <robndbox>{where}')
        x1, y1, x2, y2 = rec['bbox']
        if x2 < x1 or y2 < y1:
            _fail(path, f'box {rec["bbox"]}{where} has xmax < xmin or ymax < ymin')
        out['objects'].append(rec)
    return out


def write_voc_xml(path: str, filename: str, width: int, height: int,
                  objects: Sequence[dict], depth: int = 3,
                  database: Optional[str] = 'DIOR') -> None:
    """Write horizontal boxes as DIOR's / VOC's XML.

    Layout of DIOR's ``Horizontal Bounding Boxes`` files: ``filename``,
    ``source/database``, ``size``, ``segmented`` and per object ``name``,
    ``pose``, ``truncated``, ``difficult`` and ``bndbox`` (``xmin``, ``ymin``,
    ``xmax``, ``ymax``).

    Args:
        objects: dicts with ``name`` and ``bbox`` (x1, y1, x2, y2), optional
            ``difficult`` / ``truncated``.
    """
    root = ET.Element('annotation')
    _sub(root, 'filename', filename)
    if database is not None:
        _sub(_sub(root, 'source'), 'database', database)
    size = _sub(root, 'size')
    _sub(size, 'width', int(width))
    _sub(size, 'height', int(height))
    _sub(size, 'depth', int(depth))
    _sub(root, 'segmented', 0)
    for obj in objects:
        node = _sub(root, 'object')
        _sub(node, 'name', obj['name'])
        _sub(node, 'pose', 'Unspecified')
        _sub(node, 'truncated', int(obj.get('truncated', 0)))
        _sub(node, 'difficult', int(obj.get('difficult', 0)))
        box = _sub(node, 'bndbox')
        for tag, v in zip(('xmin', 'ymin', 'xmax', 'ymax'), obj['bbox']):
            _sub(box, tag, _fmt(v))
    _write_xml(root, path)


# -- FAIR1M XML ------------------------------------------------------------------
def read_fair1m_xml(path: str) -> dict:
    """Read a FAIR1M label (or result) XML.

    Returns:
        dict: ``filename``, ``origin``, ``width``, ``height`` (None if
        absent) and ``objects``: dicts with ``name``, ``poly`` (the four
        corners; the closing fifth point is dropped) and ``score`` (the
        ``<probability>``, 1.0 if absent).
    """
    root = _parse_xml(path)
    if root.tag != 'annotation':
        _fail(path, f'root element is <{root.tag}>, expected <annotation>')
    source = root.find('source')
    out = dict(filename=None, origin=None, width=None, height=None, objects=[])
    if source is not None:
        out['filename'] = _text(source, 'filename', path, required=False)
        out['origin'] = _text(source, 'origin', path, required=False)
    size = root.find('size')
    if size is not None and size.find('width') is not None:
        out['width'] = int(_number(size, 'width', path, ' in <size>'))
        out['height'] = int(_number(size, 'height', path, ' in <size>'))
    objects = root.find('objects')
    if objects is None:
        _fail(path, 'missing <objects>')
    for k, obj in enumerate(objects.findall('object')):
        where = f' in <object> #{k}'
        coord = _text(obj, 'coordinate', path, required=False)
        if coord is not None and coord.lower() != 'pixel':
            _fail(path, f'<coordinate>{where} is {coord!r}; only pixel '
                  'coordinates are supported')
        result = obj.find('possibleresult')
        if result is None:
            _fail(path, f'missing <possibleresult>{where}')
        name = _text(result, 'name', path, where=where)
        prob = _text(result, 'probability', path, required=False)
        points = obj.find('points')
        if points is None:
            _fail(path, f'missing <points>{where}')
        pts = []
        for p in points.findall('point'):
            try:
                x, y = (float(v) for v in p.text.split(','))
            except (AttributeError, ValueError):
                _fail(path, f'<point>{where} is not "x,y": {p.text!r}')
            pts.append((x, y))
        if len(pts) >= 2 and pts[-1] == pts[0]:
            pts = pts[:-1]  # FAIR1M closes the polygon by repeating point 1
        if len(pts) != 4:
            _fail(path, f'<points>{where} has {len(pts)} distinct points, '
                  'expected a quadrilateral (4, or 5 with the first repeated)')
        out['objects'].append(dict(
            name=name, poly=[c for xy in pts for c in xy],
            score=float(prob) if prob is not None else 1.0))
    return out


def write_fair1m_xml(path: str, filename: str, objects: Sequence[dict],
                     width: Optional[int] = None, height: Optional[int] = None,
                     origin: str = 'GF2/GF3') -> None:
    """Write objects in FAIR1M's XML schema (labels or test-server results).

    Args:
        objects: dicts with ``name`` (a FAIR1M name), ``poly`` (8 numbers)
            and optional ``score`` (written as ``<probability>``, 1 if absent).
    """
    root = ET.Element('annotation')
    source = _sub(root, 'source')
    _sub(source, 'filename', filename)
    _sub(source, 'origin', origin)
    research = _sub(root, 'research')
    for tag, val in (('version', '2.0'), ('provider', 'rsvheat_mm'),
                     ('author', 'rsvheat_mm'), ('pluginname', 'FAIR1M'),
                     ('pluginclass', 'object detection'), ('time', '')):
        _sub(research, tag, val)
    if width is not None and height is not None:
        size = _sub(root, 'size')
        _sub(size, 'width', int(width))
        _sub(size, 'height', int(height))
        _sub(size, 'depth', 3)
    objs = _sub(root, 'objects')
    for obj in objects:
        node = _sub(objs, 'object')
        _sub(node, 'coordinate', 'pixel')
        _sub(node, 'type', 'rectangle')
        _sub(node, 'description', 'None')
        result = _sub(node, 'possibleresult')
        _sub(result, 'name', obj['name'])
        _sub(result, 'probability', f'{float(obj.get("score", 1.0)):.6f}')
        points = _sub(node, 'points')
        poly = [float(v) for v in obj['poly']]
        for i in list(range(4)) + [0]:
            _sub(points, 'point', f'{poly[2 * i]:.6f},{poly[2 * i + 1]:.6f}')
    _write_xml(root, path)


# -- DOTA label files ------------------------------------------------------------
def read_dota_txt(path: str) -> dict:
    """Read a DOTA label file.

    Returns:
        dict: ``imagesource`` and ``gsd`` (from the optional header, else
        None) and ``objects``: dicts with ``poly`` (8 floats), ``name`` and
        ``difficult`` (0 when the column is absent).
    """
    out = dict(imagesource=None, gsd=None, objects=[])
    with open(path, encoding='utf-8') as f:
        lines = f.read().splitlines()
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith('imagesource:'):
            out['imagesource'] = line.split(':', 1)[1].strip()
            continue
        if line.startswith('gsd:'):
            val = line.split(':', 1)[1].strip()
            try:
                out['gsd'] = float(val)
            except ValueError:
                out['gsd'] = None  # DOTA writes 'gsd:null' when unknown
            continue
        items = line.split()
        if len(items) not in (9, 10):
            _fail(path, f'line {lineno}: expected "x1 y1 ... x4 y4 class '
                  f'[difficulty]", got {len(items)} fields: {line!r}')
        try:
            poly = [float(v) for v in items[:8]]
            difficult = int(items[9]) if len(items) == 10 else 0
        except ValueError:
            _fail(path, f'line {lineno}: bad coordinates or difficulty: {line!r}')
        out['objects'].append(dict(poly=poly, name=items[8], difficult=difficult))
    return out


def dota_lines(objects: Sequence[dict]) -> List[str]:
    """DOTA label lines ``x1 y1 ... y4 class difficulty``."""
    lines = []
    for obj in objects:
        name = obj['name']
        if not name or any(c.isspace() for c in name):
            raise ValueError(f'DOTA class names cannot contain whitespace: {name!r}')
        coords = ' '.join(f'{float(v):.1f}' if float(v).is_integer() else f'{float(v):.4f}'
                          for v in obj['poly'])
        lines.append(f'{coords} {name} {int(obj.get("difficult", 0))}')
    return lines


def write_dota_txt(path: str, objects: Sequence[dict],
                   imagesource: Optional[str] = None,
                   gsd: Optional[float] = None, header: bool = True) -> None:
    """Write a DOTA label file (with the ``imagesource:``/``gsd:`` header
    of DOTA's original files if ``header``)."""
    lines = []
    if header:
        lines.append(f'imagesource:{imagesource or "unknown"}')
        lines.append(f'gsd:{gsd if gsd is not None else "null"}')
    lines += dota_lines(objects)
    atomic_write('\n'.join(lines) + ('\n' if lines else ''), path)


def read_dota_task1(result_dir: str, classes: Sequence[str]) -> Dict[str, List[dict]]:
    """Read DOTA Task1 result files (``Task1_<class>.txt``) of ``classes``.

    Returns:
        dict: image id -> list of dicts with ``name``, ``score``, ``poly``.
    """
    per_image: Dict[str, List[dict]] = {}
    for cls in classes:
        path = osp.join(result_dir, f'Task1_{cls}.txt')
        if not osp.isfile(path):
            continue
        with open(path, encoding='utf-8') as f:
            for lineno, line in enumerate(f, 1):
                items = line.split()
                if not items:
                    continue
                if len(items) != 10:
                    _fail(path, f'line {lineno}: expected "image score x1 y1 '
                          f'... y4", got {len(items)} fields')
                try:
                    score, poly = float(items[1]), [float(v) for v in items[2:]]
                except ValueError:
                    _fail(path, f'line {lineno}: bad score or coordinates')
                per_image.setdefault(items[0], []).append(
                    dict(name=cls, score=score, poly=poly))
    return per_image


def write_dota_task1(result_dir: str, classes: Sequence[str],
                     per_image: Dict[str, Sequence[dict]]) -> List[str]:
    """Write ``Task1_<class>.txt`` files (DOTA's submission format).

    Args:
        per_image: image id -> dicts with ``label`` (index into ``classes``),
            ``score`` and ``poly``.

    Returns:
        list[str]: The written files, one per class (empty ones included:
        the evaluation server expects every class).
    """
    lines: Dict[int, List[str]] = {i: [] for i in range(len(classes))}
    for img_id in sorted(per_image):
        for det in per_image[img_id]:
            coords = ' '.join(f'{float(v):.2f}' for v in det['poly'])
            lines[int(det['label'])].append(f'{img_id} {float(det["score"]):.4f} {coords}')
    os.makedirs(result_dir, exist_ok=True)
    files = []
    for i, cls in enumerate(classes):
        path = osp.join(result_dir, f'Task1_{cls}.txt')
        atomic_write(''.join(line + '\n' for line in lines[i]), path)
        files.append(path)
    return files


# -- conversions (used by tools/dataset_converters) ---------------------------------
def dior_obb_to_hbb(src_xml: str, dst_xml: str) -> dict:
    """DIOR-R ``<robndbox>`` XML -> DIOR horizontal-box XML (enclosing boxes).

    Returns:
        dict: The parsed source annotation.
    """
    ann = read_voc_xml(src_xml)
    if ann['width'] is None:
        _fail(src_xml, 'missing <size> (needed by the DIOR XML)')
    filename = ann['filename'] or osp.splitext(osp.basename(src_xml))[0] + '.jpg'
    write_voc_xml(dst_xml, filename, ann['width'], ann['height'], ann['objects'],
                  depth=ann['depth'] or 3)
    return ann


def voc_xml_to_dota(src_xml: str, dst_txt: str, classes: Sequence[str]) -> dict:
    """DIOR / DIOR-R / SAR-AIRcraft XML -> DOTA label file (class names as
    spelled in ``classes``; horizontal boxes become axis-aligned quads)."""
    ann = read_voc_xml(src_xml)
    objects = []
    for obj in ann['objects']:
        name = classes[match_class(obj['name'], classes, src_xml)]
        poly = obj['poly'] if obj['poly'] is not None else hbb_to_poly(obj['bbox']).tolist()
        objects.append(dict(poly=poly, name=name, difficult=obj['difficult']))
    write_dota_txt(dst_txt, objects)
    return ann


def fair1m_xml_to_dota(src_xml: str, dst_txt: str) -> dict:
    """FAIR1M label XML -> DOTA label file (names with ``_`` for spaces)."""
    ann = read_fair1m_xml(src_xml)
    objects = [dict(poly=obj['poly'],
                    name=FAIR1M_DOTA_CLASSES[match_class(obj['name'], FAIR1M_CLASSES, src_xml)],
                    difficult=0) for obj in ann['objects']]
    write_dota_txt(dst_txt, objects, imagesource=ann['origin'])
    return ann


def task1_to_fair1m_xml(task1_dir: str, out_dir: str,
                        image_ids: Optional[Sequence[str]] = None,
                        img_suffix: str = '.tif') -> List[str]:
    """Merged DOTA Task1 results -> one FAIR1M result XML per test image.

    Args:
        task1_dir (str): Folder of ``Task1_<class>.txt`` (FAIR1M names with
            ``_``, as written by ``MergedDOTAMetric``).
        out_dir (str): Where ``<image id>.xml`` go.
        image_ids (list[str], optional): All test images; those without a
            detection get an empty result file (the server expects one per
            image). Default: the images that have detections.
        img_suffix (str): Suffix for ``<source><filename>``.

    Returns:
        list[str]: The written files.
    """
    per_image = read_dota_task1(task1_dir, FAIR1M_DOTA_CLASSES)
    if not per_image and not image_ids:
        raise FileNotFoundError(f'no Task1_<class>.txt results in {task1_dir}')
    ids = sorted(set(per_image) | set(image_ids or ()))
    written = []
    for img_id in ids:
        dets = [dict(d, name=dota_to_fair1m_name(d['name'])) for d in per_image.get(img_id, [])]
        path = osp.join(out_dir, img_id + '.xml')
        write_fair1m_xml(path, img_id + img_suffix, dets)
        written.append(path)
    return written
