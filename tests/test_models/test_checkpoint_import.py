"""Official vHeat / RS-vHeat checkpoints into RSVHeat (init_cfg and converter)."""
import argparse
import copy
import re

import pytest
import torch

from rsvheat_mm.models.backbones import RSVHeat
from rsvheat_mm.models.backbones.convert import DeployCheckpointError
from tests.helpers import PYTHON, run_tool

TINY = dict(depths=[1, 2, 1, 1], embed_dims=16)

# Official layout, written out by hand from the spec (not by the converter).
_STEM_INV = {'conv1': 'conv1', 'norm1': 'norm1.1', 'conv2': 'conv2', 'norm2': 'norm2.1'}


def to_official(model, stem_names):
    """rsvheat_mm state dict -> official key layout (1x1-conv MLPs, to_k.0)."""
    out = {}
    for key, value in model.state_dict().items():
        value = value.clone()
        m = re.match(r'stems\.(\w+)\.(conv1|norm1|conv2|norm2)\.(\w+)$', key)
        if m:
            out[f'{stem_names[m.group(1)]}.{_STEM_INV[m.group(2)]}.{m.group(3)}'] = value
            continue
        m = re.match(r'stages\.(\d+)\.(fve|sce)$', key)
        if m:
            name = 'freq_embed' if m.group(2) == 'fve' else 'heat_capacity'
            out[f'{name}.{m.group(1)}'] = value
            continue
        m = re.match(r'stages\.(\d+)\.blocks\.(\d+)\.(.+)$', key)
        if m:
            rest = m.group(3).replace('op.to_k.', 'op.to_k.0.')
            if re.match(r'mlp\.fc[12]\.weight', rest):
                value = value[:, :, None, None]  # official MLP = 1x1 convs
            out[f'layers.{m.group(1)}.{m.group(2)}.{rest}'] = value
            continue
        m = re.match(r'stages\.(\d+)\.downsample\.(conv|norm)\.(\w+)$', key)
        if m:
            depth = model.depths[int(m.group(1))]
            idx = '0' if m.group(2) == 'conv' else '1'
            out[f'layers.{m.group(1)}.{depth}.{idx}.{m.group(3)}'] = value
            continue
        assert key.startswith('norm'), key  # our per-output norms have no counterpart
    # the classification head of the official model
    out['classifier.0.weight'] = torch.ones(128)
    out['classifier.3.weight'] = torch.zeros(10, 128)
    return out


def make_source(**kwargs):
    torch.manual_seed(0)
    src = RSVHeat(TINY, pretrain_img_size=64, **kwargs)
    src.init_weights()
    with torch.no_grad():  # make every tensor distinctive
        for p in src.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return src.eval()


def outputs(model, x, modality=None):
    with torch.no_grad():
        return model(x, modality=modality)


def assert_same(a, b):
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


def test_rsvheat_official_checkpoint_with_metadata(tmp_path):
    src = make_source(in_channels=dict(optical=3, sar=1), out_norm=False)
    state = to_official(src, {'optical': 'patch_embed_opt', 'sar': 'patch_embed_sar'})
    path = tmp_path / 'rsvheat_official.pth'
    # official releases pickle their config (argparse/yacs) next to the weights
    torch.save({'model': state, 'epoch': 99, 'config': argparse.Namespace(arch='base')}, path)
    dst = RSVHeat(TINY, pretrain_img_size=64, out_norm=False,
                  init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    dst.init_weights()
    dst.eval()
    x = torch.randn(2, 3, 64, 48)
    assert_same(outputs(dst, x), outputs(src, x))
    s = torch.randn(1, 1, 40, 40)
    assert_same(outputs(dst, s), outputs(src, s))


def test_pretraining_checkpoint_encoder_prefix(tmp_path):
    src = make_source(in_channels=dict(optical=3, sar=1), out_norm=False)
    state = {f'encoder.{k}': v for k, v in
             to_official(src, {'optical': 'patch_embed_opt', 'sar': 'patch_embed_sar'}).items()}
    state['fuse_frequency.0.weight'] = torch.randn(16, 32)  # pretraining-only
    path = tmp_path / 'rsvheat_pretrain.pth'
    torch.save({'model': state}, path)
    dst = RSVHeat(TINY, pretrain_img_size=64, out_norm=False,
                  init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    dst.init_weights()
    x = torch.randn(1, 3, 64, 64)
    assert_same(outputs(dst.eval(), x), outputs(src, x))


def test_vheat_classification_checkpoint_and_grid_resize(tmp_path):
    vheat = dict(use_sce=False, norm_position='pre', layer_scale_init_value=None,
                 in_channels=3, out_norm=False)
    src = make_source(**vheat)
    path = tmp_path / 'vheat.pth'
    torch.save({'model': to_official(src, {'optical': 'patch_embed'}),
                'model_ema': {}}, path)
    # same grid: identical outputs
    dst = RSVHeat(TINY, pretrain_img_size=64,
                  init_cfg=dict(type='Pretrained', checkpoint=str(path)), **vheat)
    dst.init_weights()
    x = torch.randn(1, 3, 64, 64)
    assert_same(outputs(dst.eval(), x), outputs(src, x))
    # another pretrain_img_size: FVE resized bilinearly to the new grid
    big = RSVHeat(TINY, pretrain_img_size=128,
                  init_cfg=dict(type='Pretrained', checkpoint=str(path)), **vheat)
    big.init_weights()
    assert big.stages[0].fve.shape == (32, 32, 16)
    ref = torch.nn.functional.interpolate(src.stages[0].fve.permute(2, 0, 1)[None], size=(32, 32),
                                          mode='bilinear', align_corners=False)[0].permute(1, 2, 0)
    torch.testing.assert_close(big.stages[0].fve.detach(), ref)


def test_missing_stems_initialised_from_optical(tmp_path):
    src = make_source(in_channels=3, out_norm=False)
    path = tmp_path / 'optical_only.pth'
    torch.save({'model': to_official(src, {'optical': 'patch_embed_opt'})}, path)
    dst = RSVHeat(TINY, pretrain_img_size=64, in_channels=dict(optical=3, sar=1, ms=13),
                  init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    dst.init_weights()
    w = src.stems.optical.conv1.weight
    torch.testing.assert_close(dst.stems.sar.conv1.weight.detach(), w.mean(1, keepdim=True) * 3)
    # a 13-band input whose bands all equal the grey image responds like RGB grey
    grey = torch.rand(1, 1, 32, 32)
    a = dst.stems.ms(grey.repeat(1, 13, 1, 1))
    b = src.stems.optical(grey.repeat(1, 3, 1, 1))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_our_checkpoints_and_deploy_refusal(tmp_path):
    src = make_source(in_channels=dict(optical=3, sar=1))
    path = tmp_path / 'ours.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in src.state_dict().items()},
                'meta': {}}, path)
    dst = RSVHeat(TINY, pretrain_img_size=64,
                  init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    dst.init_weights()
    x = torch.randn(1, 3, 48, 64)
    assert_same(outputs(dst.eval(), x), outputs(src, x))

    deployed = copy.deepcopy(src)
    deployed.switch_to_deploy()
    dpath = tmp_path / 'deploy.pth'
    torch.save({'state_dict': deployed.state_dict()}, dpath)
    with pytest.raises(DeployCheckpointError, match='deploy.pth.*inference-only'):
        RSVHeat(TINY, pretrain_img_size=64,
                init_cfg=dict(type='Pretrained', checkpoint=str(dpath))).init_weights()
    # ... but a deploy-mode backbone takes it
    inf = RSVHeat(TINY, pretrain_img_size=64, deploy=True,
                  init_cfg=dict(type='Pretrained', checkpoint=str(dpath)))
    inf.init_weights()
    assert_same(outputs(inf.eval(), x), outputs(src, x))
    # official deploy checkpoints (k_exp) too
    official = to_official(src, {'optical': 'patch_embed_opt', 'sar': 'patch_embed_sar'})
    official['layers.0.0.op.k_exp'] = torch.rand(16, 16, 16)
    opath = tmp_path / 'official_deploy.pth'
    torch.save({'model': official}, opath)
    with pytest.raises(DeployCheckpointError, match='official_deploy.pth'):
        RSVHeat(TINY, pretrain_img_size=64,
                init_cfg=dict(type='Pretrained', checkpoint=str(opath))).init_weights()


def test_nothing_matching_is_an_error(tmp_path):
    path = tmp_path / 'other.pth'
    torch.save({'state_dict': {'backbone.conv.weight': torch.ones(1)}}, path)
    with pytest.raises(ValueError, match='other.pth.*none of'):
        RSVHeat(TINY, pretrain_img_size=64,
                init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()


def test_converter_tool(tmp_path):
    src = make_source(in_channels=dict(optical=3, sar=1), out_norm=False)
    path = tmp_path / 'official.pth'
    torch.save({'model': to_official(src, {'optical': 'patch_embed_opt', 'sar': 'patch_embed_sar'}),
                'config': argparse.Namespace(x=1)}, path)
    out = tmp_path / 'converted.pth'
    printed = run_tool([PYTHON, 'tools/model_converters/vheat2rsvheat.py', str(path), str(out)],
                       timeout=300)
    assert "'depths': [1, 2, 1, 1]" in printed and "'use_sce': True" in printed
    converted = torch.load(out, weights_only=True)  # plain tensors + containers only
    assert all(k.startswith('backbone.') for k in converted['state_dict'])
    dst = RSVHeat(TINY, pretrain_img_size=64, out_norm=False,
                  init_cfg=dict(type='Pretrained', checkpoint=str(out), prefix='backbone.'))
    dst.init_weights()
    x = torch.randn(1, 3, 64, 64)
    assert_same(outputs(dst.eval(), x), outputs(src, x))


def test_grids_resized_on_every_loading_path(tmp_path):
    """A checkpoint built for another pretrain_img_size loads with its FVE/SCE
    grids resized by plain load_state_dict, mmengine's load_checkpoint (what
    ``load_from`` uses) with a ``backbone.`` prefix, and init_cfg alike."""
    import torch.nn as nn
    from mmengine.runner import load_checkpoint

    from rsvheat_mm.models.layers import resize_embedding
    tiny = dict(depths=[1, 1, 1, 1], embed_dims=16)
    torch.manual_seed(0)
    src = RSVHeat(tiny, in_channels=dict(optical=3), pretrain_img_size=64)
    src.init_weights()
    expect = {f'stages.{i}.{n}': resize_embedding(getattr(src.stages[i], n), grid)
              for i, grid in enumerate([(24, 24), (12, 12), (6, 6), (3, 3)])
              for n in ('fve', 'sce')}

    def check(model):
        for key, value in expect.items():
            torch.testing.assert_close(model.state_dict()[key], value, msg=key)

    dst = RSVHeat(tiny, in_channels=dict(optical=3), pretrain_img_size=96)
    dst.load_state_dict(src.state_dict())
    check(dst)

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = RSVHeat(tiny, in_channels=dict(optical=3), pretrain_img_size=96)

    path = str(tmp_path / 'ckpt.pth')
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in src.state_dict().items()}}, path)
    wrapped = Wrapper()
    load_checkpoint(wrapped, path, strict=True)
    check(wrapped.backbone)

    via_init = RSVHeat(tiny, in_channels=dict(optical=3), pretrain_img_size=96,
                       init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.'))
    via_init.init_weights()
    check(via_init)
