"""The fused training block (one autograd function per block) equals plain
autograd: outputs and every gradient, for every block variant (issue 16)."""
import copy

import pytest
import torch

from rsvheat_mm.models.backbones import RSVHeat

TINY = dict(depths=[1, 2, 1, 1], embed_dims=16)


def _pair(**kw):
    torch.manual_seed(0)
    fused = RSVHeat(TINY, in_channels=dict(optical=3), pretrain_img_size=64, **kw)
    fused.init_weights()
    # non-trivial layer scales and biases, so every gradient term matters
    with torch.no_grad():
        for name, p in fused.named_parameters():
            if name.endswith(('gamma1', 'gamma2')):
                p.uniform_(0.5, 1.5)
            elif name.endswith('bias'):
                p.normal_(0, 0.1)
    plain = copy.deepcopy(fused)
    for stage in plain.stages:
        stage.fused_training = False
    return fused.train(), plain.train()


def _grads(model, x, seed=0):
    torch.manual_seed(seed)
    x = x.clone().requires_grad_(True)
    outs = model(x)
    loss = sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    grads['input'] = x.grad.clone()
    model.zero_grad(set_to_none=True)
    return [o.detach() for o in outs], grads


def _compare(fused, plain, x):
    outs_f, g_f = _grads(fused, x)
    outs_p, g_p = _grads(plain, x)
    for a, b in zip(outs_f, outs_p):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert set(g_f) == set(g_p)
    for name in g_p:
        scale = g_p[name].abs().max().clamp_min(1e-6)
        torch.testing.assert_close(g_f[name] / scale, g_p[name] / scale, atol=1e-5, rtol=1e-4,
                                   msg=lambda m, n=name: f'{n}: {m}')


@pytest.mark.parametrize('kw', [
    dict(),  # RS-vHeat: res-post-norm, SCE, layer scale
    dict(use_sce=False, norm_position='pre', layer_scale_init_value=None),  # vHeat
    dict(norm_position='pre'),
    dict(embed_interp='zero_pad'),
    dict(embed_interp='bicubic', layer_scale_init_value=None),
], ids=['rsvheat', 'vheat', 'pre-sce', 'zero-pad', 'bicubic-no-gamma'])
def test_fused_equals_autograd(kw):
    fused, plain = _pair(**kw)
    _compare(fused, plain, torch.randn(2, 3, 72, 56))


def test_fused_with_pocketfft_axes_and_checkpointing():
    fused, plain = _pair(dct_impl='scipy')
    _compare(fused, plain, torch.randn(1, 3, 40, 48))
    cp, _ = _pair(with_cp=True)
    _, plain = _pair()
    _compare(cp, plain, torch.randn(1, 3, 40, 48))


@pytest.mark.parametrize('kw', [dict(), dict(norm_position='pre', drop_path_rate=0.5)],
                         ids=['post-norm', 'pre-norm-drop-path'])
def test_fused_mlp_in_bands_of_rows(kw, monkeypatch):
    """The MLP's hidden made in bands of rows (forward and backward; weight and
    layer-scale gradients summed over bands, drop-path masks per row) equals
    autograd's whole-map MLP; bands that do not divide the map included."""
    from rsvheat_mm.models.layers import block_autograd
    calls = []
    rows = block_autograd._mlp_rows
    monkeypatch.setattr(block_autograd, 'MLP_CHUNK_BYTES', 64 * 7 * 4)  # 7 rows of 4C=64
    monkeypatch.setattr(block_autograd, '_mlp_rows',
                        lambda x, hidden: calls.append(rows(x, hidden)) or calls[-1])
    fused, plain = _pair(**kw)
    _compare(fused, plain, torch.randn(4, 3, 40, 48))
    assert calls and calls[0] == 7  # stage 1 (4C = 64) in bands of 7 rows


def test_fused_drop_path_draws_the_same_masks():
    fused, plain = _pair(drop_path_rate=0.5)
    _compare(fused, plain, torch.randn(4, 3, 32, 32))


def test_fused_with_frozen_stages():
    fused, plain = _pair(frozen_stages=2)
    _compare(fused, plain, torch.randn(1, 3, 48, 48))


def test_bf16_autocast_training_is_close_and_finite():
    fused, plain = _pair()
    x = torch.randn(1, 3, 64, 64)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs_f, g_f = _grads(fused, x)
    _, g_ref = _grads(plain, x)  # fp32 reference
    for name in ('stages.0.blocks.0.op.linear.weight', 'stages.1.fve', 'stages.0.sce', 'input'):
        assert torch.isfinite(g_f[name]).all()
        rel = (g_f[name].float() - g_ref[name]).norm() / g_ref[name].norm()
        assert rel < 0.1, (name, float(rel))
