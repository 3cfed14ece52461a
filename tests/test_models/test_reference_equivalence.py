"""The optimised backbone equals the literal transcription of the spec.

Every optimisation (channels-last blocks, K from the pretraining grid then
resized, eval-time decay cache, chunked inference MLP, deploy mode, FFT DCT,
torch.compile-friendly code) must keep the outputs within 1e-5 of
tests/test_models/reference_rsvheat.py.
"""
import copy

import pytest
import torch

from rsvheat_mm.models.backbones import RSVHeat
from rsvheat_mm.models.layers import block_autograd
from tests.test_models.reference_rsvheat import reference_forward


def _model(**kw):
    torch.manual_seed(0)
    m = RSVHeat(dict(depths=[1, 2, 1, 1], embed_dims=16), pretrain_img_size=64, **kw)
    m.init_weights()
    with torch.no_grad():  # non-trivial conductivity, gammas and embeddings
        for stage in m.stages:
            stage.fve.normal_(0, 0.5)
            if stage.sce is not None:
                stage.sce.normal_(0, 0.5)
            for blk in stage.blocks:
                blk.op.to_k.weight.normal_(0, 0.3)
                blk.op.to_k.bias.uniform_(0, 2)
                if blk.gamma1 is not None:
                    blk.gamma1.uniform_(0.2, 1)
                    blk.gamma2.uniform_(0.2, 1)
    return m.eval()


def _check(outs, ref):
    for o, r in zip(outs, ref):
        assert o.shape == r.shape
        torch.testing.assert_close(o, r, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize('size', [(64, 64), (72, 104)])
@pytest.mark.parametrize('variant', ['rsvheat', 'vheat'])
def test_backbone_equals_reference(size, variant):
    kw = {} if variant == 'rsvheat' else dict(
        use_sce=False, norm_position='pre', layer_scale_init_value=None)
    model = _model(**kw)
    x = torch.randn(2, 3, *size)
    ref = reference_forward(model, x)
    with torch.enable_grad():
        _check(model(x), ref)  # eval, grad enabled: no cache, no chunking
    with torch.no_grad():
        _check(model(x), ref)  # cached decay
        _check(model(x), ref)  # ... reused
    deployed = copy.deepcopy(model)
    deployed.switch_to_deploy()
    with torch.no_grad():
        _check(deployed(x), ref)


def test_inference_optimisations_equal_reference(monkeypatch):
    model = _model()
    x = torch.randn(1, 3, 96, 80)
    ref = reference_forward(model, x)
    monkeypatch.setattr(block_autograd, 'MLP_CHUNK_BYTES', 4096)  # the MLP in many bands
    with torch.no_grad():
        _check(model(x), ref)
    for impl in ('fft', 'scipy'):  # the torch.fft and pocketfft DCT paths
        for stage in model.stages:
            for blk in stage.blocks:
                blk.op.dct_impl = impl
        with torch.no_grad():
            _check(model(x), ref)


@pytest.mark.parametrize('interp', ['bilinear', 'bicubic', 'zero_pad'])
def test_banded_decay_and_sce_equal_reference(monkeypatch, interp):
    """Inputs too large to reuse their decays (here: cache_mb=0) compute the
    decay and the SCE band by band inside each block: same features."""
    from rsvheat_mm.models.layers import hco_layer
    model = _model(cache_mb=0, embed_interp=interp)
    x = torch.randn(1, 3, 88, 120)
    if interp == 'bilinear':
        ref = reference_forward(model, x)
    else:  # the transcription resizes bilinearly only: compare with autograd's path
        with torch.enable_grad():
            ref = [o.detach() for o in model(x)]
    monkeypatch.setattr(hco_layer, 'BAND_BYTES', 3000)  # several bands per map
    with torch.no_grad():
        _check(model(x), ref)
    assert len(model.resolution_cache) == 0
    deployed = copy.deepcopy(model)
    deployed.switch_to_deploy()
    with torch.no_grad():
        _check(deployed(x), ref)
