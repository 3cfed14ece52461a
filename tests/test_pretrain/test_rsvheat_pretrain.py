"""RSVHeatPretrain: losses on mixed batches of real images, the clean skip of
L_con, a short tools/train.py run on the bundled images that lowers the loss,
and its checkpoint initialising an mmseg UperNet RSVHeat with every backbone
key loaded."""
import glob
import json
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

from tests.helpers import PYTHON, ROOT, TINY_ARCH as TINY, run_tool
from tests.test_pretrain.utils import DEMO, PAPER, build_model, make_samples


def test_losses_on_a_mixed_batch(samples):
    model = build_model()
    data = model.data_preprocessor(pseudo_collate(samples), True)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_spa', 'loss_fre', 'loss_con'}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    # Only the stage-1/2 output norms (kept for downstream models) are unused.
    assert sorted(no_grad) == ['backbone.norm0.bias', 'backbone.norm0.weight',
                               'backbone.norm1.bias', 'backbone.norm1.weight']
    # Both stems and both decoder heads were trained by the mixed batch.
    for name in ('backbone.stems.optical.conv1.weight', 'backbone.stems.sar.conv1.weight',
                 'decoder.heads.optical.weight', 'decoder.heads.sar.weight'):
        assert dict(model.named_parameters())[name].grad.abs().sum() > 0, name

    # The reconstruction covers primaries and partners with their own bands.
    out = model.reconstruct(data['inputs'], data['data_samples'])
    assert out['modalities'] == ['optical', 'optical', 'optical', 'sar', 'optical',
                                 'sar', 'sar', 'sar']
    assert out['pred'].shape == (8, 3, 48, 48)
    assert out['band_mask'].sum(1).tolist() == [3, 3, 3, 1, 3, 1, 1, 1]
    assert out['pred'][3, 1:].abs().max() == 0

    # mode='tensor': backbone features of the unmasked images.
    feats = model(data['inputs'], data['data_samples'], mode='tensor')
    assert [f.shape[1] for f in feats] == [32, 64, 128, 256]


def test_contrastive_term_is_zero_without_pairs(samples):
    model = build_model()
    unpaired = [samples[1], samples[3]]
    data = model.data_preprocessor(pseudo_collate(unpaired), True)
    losses = model(**data, mode='loss')
    assert losses['loss_con'].item() == 0
    assert losses['loss_spa'] > 0 and losses['loss_fre'] > 0
    sum(losses.values()).backward()
    # Zero gradients (not missing ones) on the projector.
    for name, p in model.projector.named_parameters():
        assert p.grad is not None and p.grad.abs().max() == 0, name

    # The term does depend on the partner: another SAR image raises it.
    model = build_model()
    data = model.data_preprocessor(pseudo_collate([samples[0], samples[2], samples[4]]), True)
    true = model(**data, mode='loss')['loss_con'].item()
    for s in data['data_samples']:
        s.partner_inputs = s.partner_inputs.flip(-1).flip(-2)
    assert model(**data, mode='loss')['loss_con'].item() != pytest.approx(true)


def test_configuration_errors():
    with pytest.raises(ValueError, match='out_indices'):
        build_model(backbone=dict(type='RSVHeat', arch=TINY, out_indices=(0, 1, 2)))
    with pytest.raises(ValueError, match='sar'):
        build_model(decoder=dict(type='RSVHeatReconstructionDecoder', channels=32,
                                 min_channels=16, out_channels=dict(optical=3)))
    with pytest.raises(TypeError, match='RSVHeatPretrainDataPreprocessor'):
        build_model(data_preprocessor=dict(type='SelfSupDataPreprocessor'))


def test_paper_config_builds():
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(osp.join(ROOT, PAPER))
    assert cfg.model.backbone.arch == 'base' and cfg.model.backbone.pretrain_img_size == 224
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.optimizer.type == 'AdamW' and cfg.optim_wrapper.optimizer.lr == 2e-4
    assert cfg.param_scheduler[-1].type == 'CosineAnnealingLR'
    assert cfg.train_cfg.max_epochs == 200
    masking = cfg.paired_pipeline[2]
    assert masking.ratio_range == (0.2, 0.3) and masking.ratio_mode == 'area'
    losses = [cfg.model[k].loss_weight for k in ('loss_spa', 'loss_fre', 'loss_con')]
    assert losses == [1.0, 1.0, 1.0]
    cfg.model.backbone.arch = TINY  # the real build, with a small backbone
    model = MODELS.build(cfg.model)
    assert model.neck.in_channels == [64, 128] and model.decoder.in_channels == [64, 128]
    assert model.decoder.laterals[0].in_channels == 64
    assert model.decoder.out_channels == dict(optical=3, sar=1)
    assert model.target_mode == 'image'
    assert all(t.get('drop_range') is None for t in _maskings(cfg))  # the paper's split


def _maskings(cfg):
    return [t for ds in cfg.train_dataloader.dataset.datasets for t in ds.pipeline
            if t['type'] == 'RSVHeatFrequencyMasking']


@pytest.mark.parametrize('variant', ['banddrop', 'cross'])
def test_variant_configs_change_only_the_pretext(variant):
    """The two recipes that withhold information (docs/pretraining.md) are the
    paper's recipe with one change each."""
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    paper = Config.fromfile(osp.join(ROOT, PAPER))
    cfg = Config.fromfile(osp.join(ROOT, PAPER.replace('rsvheat-pretrain_',
                                                       f'rsvheat-pretrain-{variant}_')))
    if variant == 'banddrop':
        maskings = _maskings(cfg)
        assert len(maskings) == 3
        for t in maskings:  # the high view stays the paper's (beyond 20-30 %)
            assert t.pop('ratio_range') == (0.05, 0.1) and t.pop('drop_range') == (0.15, 0.2)
            t.ratio_range = (0.2, 0.3)
        assert cfg.train_dataloader == paper.train_dataloader
        assert cfg.model == paper.model
    else:
        assert cfg.model.target_mode == 'cross' and cfg.model.neck is None
        assert cfg.train_dataloader == paper.train_dataloader
        cfg.model.backbone.arch = TINY
        model = MODELS.build(cfg.model)
        assert model.target_mode == 'cross' and not model.with_neck
    for key in ('optim_wrapper', 'param_scheduler', 'train_cfg', 'data_preprocessor'):
        assert cfg[key] == paper[key], key


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    """The demo config trained by tools/train.py (40 iterations, fixed seed)."""
    work_dir = tmp_path_factory.mktemp('pretrain_run')
    cmd = [PYTHON, 'tools/train.py', DEMO, '--work-dir', str(work_dir), '--cfg-options',
           'default_hooks.logger.interval=1', 'log_processor.window_size=1']
    # One thread: on a shared 2-core machine OpenMP's spin-waiting otherwise
    # costs ~10x the tiny model's compute.
    run_tool(cmd, timeout=600, OMP_NUM_THREADS=1)
    scalars = glob.glob(str(work_dir / '*' / 'vis_data' / 'scalars.json'))
    assert len(scalars) == 1
    with open(scalars[0]) as f:
        rows = [json.loads(line) for line in f if '"loss"' in line]
    return work_dir, rows


def _fixed_batch_losses(model):
    """L_spa and L_fre of ``model`` on one fixed batch (the same crops, masks
    and partners every time): no batch-to-batch noise in the comparison."""
    samples = make_samples(('pair', 'optical', 'pair', 'optical', 'pair', 'optical'), size=64)
    data = model.data_preprocessor(pseudo_collate(samples), True)
    with torch.no_grad():
        out = model.reconstruct(data['inputs'], data['data_samples'])
        spa = model.loss_spa(out['pred'], out['target'], out['band_mask']).item()
        fre = model.loss_fre(out['pred'], out['target'], out['band_mask']).item()
        # the zero predictor: the per-band mean image
        zero = model.loss_spa(torch.zeros_like(out['target']), out['target'],
                              out['band_mask']).item()
    return spa, fre, zero


def test_training_lowers_the_loss(pretrained):
    work_dir, rows = pretrained
    assert [r['iter'] for r in rows] == list(range(1, 41))
    assert np.isfinite([r['loss'] for r in rows]).all()
    # The contrastive term ran (batches with pairs) and was zero (without).
    con = np.array([r['loss_con'] for r in rows])
    assert (con > 0).sum() >= 20 and (con == 0).any()
    # On one fixed batch the trained weights reconstruct far better than the
    # initial ones and than the mean image (the logged per-batch losses vary
    # with the batch content too much for a tight comparison).
    model = build_model()
    spa_init, fre_init, zero = _fixed_batch_losses(model)
    ckpt = torch.load(str(work_dir / 'iter_40.pth'), map_location='cpu', weights_only=False)
    model.load_state_dict(ckpt['state_dict'])
    spa, fre, zero_again = _fixed_batch_losses(model)
    print(f'fixed batch: L_spa {spa_init:.3f} -> {spa:.3f} (mean image {zero:.3f}), '
          f'L_fre {fre_init:.3f} -> {fre:.3f}')
    # measured (AMD EPYC, 1 thread): L_spa 1.031 -> 0.577 (mean image 0.840),
    # L_fre 0.198 -> 0.172
    assert zero_again == zero
    assert spa < 0.7 * spa_init and spa < 0.8 * zero
    assert fre < fre_init


@pytest.mark.parametrize('img_size', [64, 256])
def test_checkpoint_initialises_upernet(pretrained, img_size):
    work_dir, _ = pretrained
    ckpt_path = str(work_dir / 'iter_40.pth')
    ckpt = torch.load(ckpt_path, map_location='cpu', weights_only=False)['state_dict']
    pre = {k[len('backbone.'):]: v for k, v in ckpt.items() if k.startswith('backbone.')}
    assert pre and not any(k.startswith('data_preprocessor') for k in ckpt)

    arch = Config.fromfile(osp.join(ROOT, DEMO)).model.backbone.arch.to_dict()
    dims = [arch['embed_dims'] * 2**i for i in range(4)]
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    cfg = Config.fromfile(osp.join(ROOT, 'configs/_base_/models/upernet_rsvheat.py'))
    norm = dict(type='BN', requires_grad=True)
    cfg.model.backbone.update(arch=arch, pretrain_img_size=img_size, init_cfg=dict(
        type='Pretrained', checkpoint=ckpt_path, prefix='backbone.'))
    cfg.model.decode_head.update(in_channels=dims, channels=16, norm_cfg=norm)
    cfg.model.auxiliary_head.update(in_channels=dims[2], channels=8, norm_cfg=norm)
    cfg.model.data_preprocessor = dict(type='SegDataPreProcessor')
    segmentor = MODELS.build(cfg.model)
    segmentor.init_weights()

    own = segmentor.backbone.state_dict()
    assert set(own) == set(pre), set(own) ^ set(pre)  # every backbone key
    for key, value in own.items():
        src = pre[key]
        if value.shape != src.shape:  # FVE/SCE grids follow pretrain_img_size
            assert key.endswith(('.fve', '.sce')) and img_size != 64, key
            src = F.interpolate(src.permute(2, 0, 1)[None], size=value.shape[:2],
                                mode='bilinear', align_corners=False)[0].permute(1, 2, 0)
        torch.testing.assert_close(value, src, msg=key)
