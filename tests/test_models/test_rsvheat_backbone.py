"""RSVHeat backbone: shapes, sizes, modes and numerical equivalences."""
import copy

import pytest
import torch

from rsvheat_mm.models.backbones import RSVHeat

TINY = dict(depths=[1, 1, 2, 1], embed_dims=16)


def build(**kwargs):
    kwargs.setdefault('arch', TINY)
    kwargs.setdefault('pretrain_img_size', 64)
    torch.manual_seed(0)
    model = RSVHeat(**kwargs)
    model.init_weights()
    return model


def count(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize('size', [(64, 64), (96, 64), (70, 45), (33, 130)])
def test_strides_and_channels_any_size(size):
    model = build().eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        outs = model(x)
    assert len(outs) == 4
    h, w = size
    for i, out in enumerate(outs):
        exp_h, exp_w = h, w
        for _ in range(i + 2):
            exp_h, exp_w = (exp_h + 1) // 2, (exp_w + 1) // 2
        assert out.shape == (2, 16 * 2**i, exp_h, exp_w), (i, out.shape)
        assert out.is_contiguous() and torch.isfinite(out).all()


def test_base_parameter_count_matches_official():
    # Official RS-vHeat-B backbone (optical stem): 91.88 M at 224, 98.24 M at 512.
    model = RSVHeat('base', in_channels=dict(optical=3), out_norm=False)
    assert f'{count(model) / 1e6:.2f}' == '91.88'
    model = RSVHeat('base', in_channels=dict(optical=3), out_norm=False, pretrain_img_size=512)
    assert f'{count(model) / 1e6:.2f}' == '98.24'


def test_sizes_scale_like_vheat():
    """vHeat-T/S/B at 224 (published, deploy mode incl. 1k head): 29/50/87 M.

    Counted like vHeat's deploy model: no SCE, pre-norm, no layer scale, no
    ``to_k`` (folded into the precomputed decay), FVE kept, plus a LayerNorm
    + Linear(1000) classifier. The published figures are rounded and the
    head is an estimate, hence the 4 % tolerance.
    """
    published = dict(tiny=29e6, small=50e6, base=87e6)
    for arch, ref in published.items():
        model = RSVHeat(arch, in_channels=3, use_sce=False, norm_position='pre',
                        layer_scale_init_value=None, out_norm=False, out_indices=(3, ))
        to_k = sum(p.numel() for n, p in model.named_parameters() if '.to_k.' in n)
        dims = model.dims[-1]
        head = 2 * dims + dims * 1000 + 1000
        total = count(model) - to_k + head
        assert abs(total - ref) / ref < 0.04, (arch, total)
    depths = {a: RSVHeat.arch_zoo[a]['depths'] for a in published}
    assert depths == dict(tiny=[2, 2, 6, 2], small=[2, 2, 18, 2], base=[2, 2, 18, 2])


def test_out_indices_and_raw_features():
    model = build(out_indices=(1, 3), out_norm=False).eval()
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [32, 128]
    assert not hasattr(model, 'norm0')
    assert isinstance(model.norm3, torch.nn.Identity)


def test_modality_selection():
    model = build(in_channels=dict(optical=3, sar=1, ms=13)).eval()
    opt = torch.randn(2, 3, 32, 32)
    sar = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        a = model(opt)[0]
        b = model(sar)[0]
        c = model(torch.randn(2, 13, 32, 32))[0]
        assert a.shape == b.shape == c.shape
        # explicit per-sample modalities on a zero-padded mixed batch
        mixed = torch.zeros(2, 3, 32, 32)
        mixed[0] = opt[0]
        mixed[1, :1] = sar[1]
        d = model(mixed, modality=['optical', 'sar'])[0]
        torch.testing.assert_close(d[0], a[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(d[1], b[1], atol=1e-5, rtol=0)
        with model.use_modality('sar'):
            torch.testing.assert_close(model(sar)[0], b)
    with pytest.raises(ValueError, match='cannot choose a stem'):
        model(torch.randn(1, 4, 32, 32))
    with pytest.raises(KeyError, match='no .* stem'):
        model(opt, modality='hyperspectral')
    # the SAR stem is really used (different weights -> different features)
    assert not torch.allclose(model(sar.repeat(1, 3, 1, 1), modality='optical')[0],
                              model(sar, modality='sar')[0])


def test_int_in_channels_means_single_optical_stem():
    model = build(in_channels=4)
    assert list(model.stems) == ['optical']
    assert model(torch.randn(1, 4, 32, 32))[0].shape == (1, 16, 8, 8)


@pytest.mark.parametrize('interp', ['bilinear', 'bicubic', 'zero_pad'])
@pytest.mark.parametrize('size', [(64, 64), (80, 48)])
def test_deploy_equals_train_mode(interp, size):
    model = build(embed_interp=interp)
    # make K non-trivial so the test sees the conductivity
    with torch.no_grad():
        for stage in model.stages:
            stage.fve.normal_(0, 1)
            for blk in stage.blocks:
                blk.op.to_k.bias.fill_(0.5)
                blk.gamma1.fill_(0.5)
                blk.gamma2.fill_(0.5)
    model.eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        ref = model(x)
        deployed = copy.deepcopy(model)
        deployed.switch_to_deploy()
        out = deployed(x)
    assert not any('to_k' in k or k.endswith('.fve') for k in deployed.state_dict())
    assert any(k.endswith('sce') for k in deployed.state_dict())
    for r, o in zip(ref, out):
        torch.testing.assert_close(o, r, atol=1e-5, rtol=0)


@pytest.mark.parametrize('with_cp', [True, 'selective'])
def test_with_cp_same_outputs_and_grads(with_cp):
    # drop path on: the recomputation must replay the same random masks
    model = build(drop_path_rate=0.3)
    model_cp = build(drop_path_rate=0.3, with_cp=with_cp)
    model_cp.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 48, 48, requires_grad=True)
    x_cp = x.detach().clone().requires_grad_(True)
    torch.manual_seed(1)
    loss = sum(o.square().mean() for o in model(x))
    torch.manual_seed(1)
    loss_cp = sum(o.square().mean() for o in model_cp(x_cp))
    loss.backward()
    loss_cp.backward()
    torch.testing.assert_close(loss_cp, loss)
    torch.testing.assert_close(x_cp.grad, x.grad, atol=1e-6, rtol=1e-5)
    for (n, p), (_, q) in zip(model.named_parameters(), model_cp.named_parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-4, msg=n)


def test_checkpointing_modes_trade_memory():
    """Live tensor bytes a training step keeps for backward: with_cp=True <
    the fused default < selective checkpointing < plain autograd; the fused
    step's peak is far below plain autograd's too."""
    from tests.helpers import import_benchmarking
    LiveBytesMode = import_benchmarking('memory').LiveBytesMode

    kept, peak = {}, {}
    for mode, kw in dict(plain=dict(fused_training=False), fused={},
                         selective=dict(with_cp='selective'), full=dict(with_cp=True)).items():
        model = build(arch=dict(depths=[2, 2, 2, 1], embed_dims=16), **kw).train()
        x = torch.randn(1, 3, 256, 256)
        with LiveBytesMode() as live:
            outs = model(x)
            kept[mode] = live.live
            sum(o.mean() for o in outs).backward()
        peak[mode] = live.peak
    assert kept['full'] < kept['fused'] < kept['selective'] < kept['plain'], kept
    assert kept['fused'] < 0.45 * kept['plain'], kept
    assert peak['fused'] < 0.6 * peak['plain'], peak


def test_train_mode_grads_reach_fve_and_to_k():
    model = build()
    sum(o.mean() for o in model(torch.randn(1, 3, 40, 56))).backward()
    stage = model.stages[0]
    assert stage.fve.grad is not None and stage.fve.grad.abs().sum() > 0
    assert stage.blocks[0].op.to_k.weight.grad.abs().sum() > 0
    assert stage.sce.grad.abs().sum() > 0


def test_frozen_stages():
    model = build(frozen_stages=2)
    model.train()
    assert not any(p.requires_grad for p in model.stems.parameters())
    assert not any(p.requires_grad for p in model.stages[1].parameters())
    assert all(p.requires_grad for p in model.stages[2].parameters())
    assert not model.stages[0].training and model.stages[2].training


def test_vheat_behaviour_without_sce():
    model = build(use_sce=False, norm_position='pre', layer_scale_init_value=None)
    assert model.stages[0].sce is None
    assert not hasattr(model.stages[0].blocks[0].op, 'norm1')
    assert model(torch.randn(1, 3, 32, 32))[0].shape == (1, 16, 8, 8)


def test_bf16_autocast_512_is_finite():
    model = build(arch=dict(depths=[1, 1, 1, 1], embed_dims=16)).eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(torch.randn(1, 3, 512, 512))
    assert all(torch.isfinite(o.float()).all() for o in outs)


def test_bad_arguments_name_the_field():
    with pytest.raises(KeyError, match='arch'):
        RSVHeat('huge')
    with pytest.raises(KeyError, match='embed_dims'):
        RSVHeat(dict(depths=[1, 1, 1, 1]))
    with pytest.raises(TypeError, match='in_channels'):
        RSVHeat(TINY, in_channels=dict(optical=0))
    with pytest.raises(ValueError, match='embed_interp'):
        RSVHeat(TINY, embed_interp='nearest')
    with pytest.raises(ValueError, match='dct_impl'):
        RSVHeat(TINY, dct_impl='dft')
    with pytest.raises(ValueError, match='with_cp'):
        RSVHeat(TINY, with_cp='some')


def test_chunked_inference_mlp_equals_full(monkeypatch):
    from rsvheat_mm.models.layers import block_autograd
    model = build().eval()
    x = torch.randn(1, 3, 96, 80)
    with torch.enable_grad():  # grad mode runs the MLP in one piece
        ref = model(x)
    monkeypatch.setattr(block_autograd, 'MLP_CHUNK_BYTES', 4096)  # force many chunks
    with torch.no_grad():
        out = model(x)
    for r, o in zip(ref, out):
        torch.testing.assert_close(o, r.detach(), atol=1e-6, rtol=1e-5)


def test_inference_mode_then_training_at_same_size():
    """Caches filled under inference_mode must not break the next training step."""
    from rsvheat_mm.models.layers import clear_heat_caches
    clear_heat_caches()
    model = build().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        model(x)
    model.train()
    sum(o.mean() for o in model(x)).backward()
    # a frozen, eval-mode stage inside a graph that needs gradients
    model = build(frozen_stages=2).eval()
    with torch.inference_mode():
        model(x)
    model.stages[2].train()
    xg = torch.randn(1, 3, 64, 64, requires_grad=True)
    sum(o.mean() for o in model(xg)).backward()
    assert xg.grad is not None


def test_unused_stems_get_zero_gradients_for_ddp():
    """DDP needs a gradient for every parameter: unused stems get exact zeros."""
    model = build(in_channels=dict(optical=3, sar=1)).train()
    x = torch.randn(2, 3, 32, 32)
    ref = [o.detach() for o in copy.deepcopy(model).eval()(x)]
    outs = model(x)
    sum(o.mean() for o in outs).backward()
    assert all(p.grad is not None and torch.all(p.grad == 0)
               for p in model.stems.sar.parameters())
    assert model.stems.optical.conv1.weight.grad.abs().sum() > 0
    model.eval()
    for r, o in zip(ref, model(x)):
        torch.testing.assert_close(o, r)
