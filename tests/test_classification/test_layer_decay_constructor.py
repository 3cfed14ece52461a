"""RSVHeatLayerDecayOptimWrapperConstructor on mmpretrain and mmseg models."""
import pytest
import torch.nn as nn
from mmengine.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS, init_default_scope

from rsvheat_mm.models.backbones import RSVHeat

DEPTHS = [1, 2, 1, 1]  # num_layers = 5 blocks + stem + head = 7
TINY = dict(depths=DEPTHS, embed_dims=16)


def _build_optimizer(model, rate=0.8, **paramwise):
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type='RSVHeatLayerDecayOptimWrapperConstructor',
        optim_wrapper_cfg=dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05)),
        paramwise_cfg=dict(layer_decay_rate=rate, **paramwise)))
    optimizer = constructor(model).optimizer
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(g['params'][0])]: g for g in optimizer.param_groups}


def test_layer_ids():
    expect = {
        'stems.sar.conv1.weight': 0,
        'stages.0.fve': 1, 'stages.0.sce': 1, 'stages.0.blocks.0.op.to_k.weight': 1,
        'stages.0.downsample.conv.weight': 1,
        'stages.1.fve': 2, 'stages.1.blocks.0.gamma1': 2, 'stages.1.blocks.1.mlp.fc1.bias': 3,
        'stages.1.downsample.norm.weight': 3,
        'stages.2.blocks.0.norm1.weight': 4, 'stages.3.blocks.0.op.linear.weight': 5,
        'norm3.weight': 6,
    }
    backbone = RSVHeat(TINY)
    for name, layer in expect.items():
        assert backbone.get_layer_depth(name) == (layer, 7), name
        assert backbone.get_layer_depth('backbone.' + name, 'backbone.') == (layer, 7), name
    assert backbone.get_layer_depth('head.fc.weight', 'backbone.') == (6, 7)


def test_classifier_groups():
    import mmpretrain  # noqa: F401
    init_default_scope('mmpretrain')
    model = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='RSVHeat', arch=TINY, pretrain_img_size=64, out_indices=(3, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=128)))
    groups = _build_optimizer(model)
    assert len(groups) == sum(p.requires_grad for p in model.parameters())

    def lr(name):
        return groups[name]['lr']

    assert lr('head.fc.weight') == pytest.approx(1e-3)
    assert lr('backbone.norm3.weight') == pytest.approx(1e-3)
    assert lr('backbone.stems.optical.conv1.weight') == pytest.approx(1e-3 * 0.8**6)
    assert lr('backbone.stages.1.blocks.1.op.linear.weight') == pytest.approx(1e-3 * 0.8**3)
    assert lr('backbone.stages.0.downsample.conv.weight') == pytest.approx(1e-3 * 0.8**5)
    # no weight decay for FVE/SCE, norms, biases, layer-scale gammas
    for name in ('backbone.stages.2.fve', 'backbone.stages.2.sce',
                 'backbone.stages.2.blocks.0.norm1.weight', 'backbone.stages.2.blocks.0.gamma2',
                 'backbone.stages.2.blocks.0.op.linear.bias', 'head.fc.bias',
                 'backbone.stems.optical.norm1.weight'):
        assert groups[name]['weight_decay'] == 0, name
    for name in ('backbone.stages.2.blocks.0.op.linear.weight', 'head.fc.weight',
                 'backbone.stems.optical.conv1.weight',
                 'backbone.stages.2.blocks.0.op.to_k.weight'):
        assert groups[name]['weight_decay'] == pytest.approx(0.05), name


def test_segmentor_groups_and_custom_keys():
    import mmseg  # noqa: F401
    init_default_scope('mmseg')
    model = MODELS.build(dict(
        type='EncoderDecoder',
        backbone=dict(type='RSVHeat', arch=TINY, pretrain_img_size=64),
        decode_head=dict(type='FCNHead', in_channels=128, in_index=3, channels=8,
                         num_classes=2, norm_cfg=dict(type='BN'))))
    # a custom lr_mult multiplies with the layer scale; custom keys still win
    groups = _build_optimizer(model, rate=0.5,
                              custom_keys={'conv_seg': dict(lr_mult=10.),
                                           '.fve': dict(decay_mult=1.)})
    assert groups['decode_head.conv_seg.weight']['lr'] == pytest.approx(1e-2)
    assert groups['decode_head.convs.0.bn.weight']['weight_decay'] == 0  # norm_decay_mult
    assert groups['decode_head.convs.0.bn.weight']['lr'] == pytest.approx(1e-3)
    assert groups['backbone.stages.3.blocks.0.op.dwconv.weight']['lr'] == pytest.approx(
        1e-3 * 0.5)
    assert groups['backbone.stages.0.fve']['weight_decay'] == pytest.approx(0.05)


def test_needs_rsvheat_and_valid_rate():
    with pytest.raises(TypeError, match='has no RSVHeat'):
        _build_optimizer(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match='layer_decay_rate must be in'):
        _build_optimizer(nn.Linear(2, 2), rate=1.5)


def test_mmpretrain_constructor_uses_get_layer_depth():
    """mmpretrain's own layer-decay constructor asks the backbone for
    ``get_layer_depth`` (as for its ViTs) and now works with RSVHeat."""
    import mmpretrain  # noqa: F401
    init_default_scope('mmpretrain')
    model = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='RSVHeat', arch=TINY, pretrain_img_size=64, out_indices=(3, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=128)))
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type='LearningRateDecayOptimWrapperConstructor',
        optim_wrapper_cfg=dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05)),
        paramwise_cfg=dict(layer_decay_rate=0.5)))
    groups = {g['param_name']: g for g in constructor(model).optimizer.param_groups}
    assert groups['backbone.stems.optical.conv1.weight']['lr'] == pytest.approx(1e-3 * 0.5**6)
    assert groups['backbone.stages.1.blocks.1.mlp.fc1.weight']['lr'] == pytest.approx(
        1e-3 * 0.5**3)
    assert groups['head.fc.weight']['lr'] == pytest.approx(1e-3)
