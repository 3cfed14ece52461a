"""rsvheat_mm: RS-vHeat remote-sensing foundation model as an OpenMMLab plugin."""
import os
import os.path as osp
import shutil
import sys
import warnings

from setuptools import find_packages, setup

ROOT = osp.dirname(osp.abspath(__file__))


def get_version():
    ns = {}
    with open(osp.join(osp.dirname(__file__), 'rsvheat_mm', 'version.py')) as f:
        exec(f.read(), ns)
    return ns['__version__']


def parse_requirements(fname):
    reqs = []
    with open(osp.join(osp.dirname(__file__), 'requirements', fname)) as f:
        for line in f:
            line = line.split('#')[0].strip()
            if line:
                reqs.append(line)
    return reqs


def add_mim_extension():
    """Put configs, tools, demo and model-index.yml into rsvheat_mm/.mim.

    OpenMMLab's ``mim`` (``mim train/test/search rsvheat_mm``) and
    :class:`rsvheat_mm.apis.RSVHeatInferencer` (model names from
    model-index.yml) find them there in an installed package: symlinks for
    editable installs, copies for wheels and sdists (as OpenMMLab repos do).
    """
    if any(cmd in sys.argv for cmd in ('develop', 'editable_wheel')):
        mode = 'symlink'
    elif any(cmd in sys.argv for cmd in ('sdist', 'bdist_wheel', 'install', 'build')):
        mode = 'copy'
    else:
        return
    mim_path = osp.join(ROOT, 'rsvheat_mm', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in ('tools', 'configs', 'demo', 'model-index.yml'):
        src = osp.join(ROOT, name)
        dst = osp.join(mim_path, name)
        if not osp.exists(src):
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            try:
                os.symlink(osp.relpath(src, mim_path), dst)
                continue
            except OSError:
                warnings.warn(f'cannot symlink {src}; copying it instead')
        if osp.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)


add_mim_extension()

setup(
    name='rsvheat_mm',
    version=get_version(),
    description='RS-vHeat (heat-conduction remote-sensing foundation model) '
    'for mmpretrain, mmsegmentation, mmdetection and mmrotate',
    long_description=open('README.md').read() if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'demo')),
    include_package_data=True,
    python_requires='>=3.8',
    install_requires=parse_requirements('runtime.txt'),
    extras_require=dict(
        mim=parse_requirements('mminstall.txt'),
        # the OneDL line (onedl-mmcv has no wheels: scripts/install.sh builds it)
        onedl=parse_requirements('mminstall-onedl.txt'),
        tests=parse_requirements('tests.txt'),
        optional=parse_requirements('optional.txt'),
    ),
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Image Recognition',
    ],
    zip_safe=False,
)
