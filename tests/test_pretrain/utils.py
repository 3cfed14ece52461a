"""Building the pretraining models and batches of the tests."""
import os.path as osp

import mmcv
import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from rsvheat_mm.datasets.pretrain_datasets import simulate_sar_standin
from rsvheat_mm.datasets.transforms.frequency_masking import (PackRSVHeatPretrainInputs,
                                                              RSVHeatFrequencyMasking)
from tests.helpers import DEMO_DATA, ROOT

DEMO = 'configs/demo/rsvheat-pretrain_rsvheat-demo_1xb4-40iter_scenes-sarstandin-64px.py'
PAPER = 'configs/pretrain/rsvheat-pretrain_rsvheat-b_8xb64-amp-coslr-200e_opt-sar-224px.py'


def build_model(config=DEMO, seed=0, **overrides):
    """The config's model (entries of ``overrides`` replace whole keys),
    initialised with ``seed``."""
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    model_cfg = Config.fromfile(osp.join(ROOT, config)).model.to_dict()
    model_cfg.update(overrides)
    torch.manual_seed(seed)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def make_samples(kinds=('pair', 'optical', 'pair', 'sar', 'pair'), size=48, seed=0,
                 masking=None):
    """Packed ``size`` px crops of the bundled scenes 1, 2, ...: ``'pair'`` =
    optical with a SAR stand-in partner, ``'optical'``/``'sar'`` unpaired."""
    rng = np.random.default_rng(seed)
    np.random.seed(seed)
    masking = masking or RSVHeatFrequencyMasking()
    pack = PackRSVHeatPretrainInputs()
    out = []
    for i, kind in enumerate(kinds, start=1):
        img = mmcv.imread(osp.join(DEMO_DATA, 'scenes', f'{i}.png'),
                          channel_order='rgb')[200:200 + size, 300:300 + size]
        img = img.astype(np.float32)
        sar = simulate_sar_standin(img, rng=rng)[..., None]
        if kind == 'sar':
            results = dict(img=sar, modality='sar', img_path=f'{i}.png')
        else:
            results = dict(img=img, modality='optical', img_path=f'{i}.png')
        if kind == 'pair':
            results.update(partner_img=sar, partner_modality='sar')
        out.append(pack(masking(results)))
    return out
