"""Pretraining losses (zero exactly for a perfect prediction, positive
otherwise; the contrastive term prefers true pairs), the frequency fusion
and the reconstruction decoder."""
import pytest
import torch
from scipy import fft as sp_fft

from rsvheat_mm.models.losses.pretrain_losses import (RSVHeatCosineContrastiveLoss,
                                                      RSVHeatPixelL1Loss,
                                                      RSVHeatSpectralL1Loss)
from rsvheat_mm.models.necks import RSVHeatFrequencyFusion, RSVHeatReconstructionDecoder


@pytest.fixture()
def images():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(3, 3, 24, 40, generator=g)
    pred = target + 0.3 * torch.randn(3, 3, 24, 40, generator=g)
    return pred, target


@pytest.mark.parametrize('loss_cls', [RSVHeatPixelL1Loss, RSVHeatSpectralL1Loss])
def test_reconstruction_losses_zero_iff_perfect(images, loss_cls):
    pred, target = images
    loss = loss_cls(loss_weight=2.0)
    assert loss(target.clone(), target).item() == 0
    worse = loss(pred, target).item()
    assert worse > 0
    assert loss(target + 2 * (pred - target), target).item() > worse


def test_pixel_and_spectral_values(images):
    pred, target = images
    assert RSVHeatPixelL1Loss()(pred, target).item() == pytest.approx(
        (pred - target).abs().mean().item(), rel=1e-6)
    spec = lambda x: torch.from_numpy(sp_fft.dctn(x.double().numpy(), axes=(-2, -1),  # noqa
                                                  norm='ortho'))
    expected = (spec(pred) - spec(target)).abs().mean().item()
    assert RSVHeatSpectralL1Loss(loss_weight=0.5)(pred, target).item() == pytest.approx(
        0.5 * expected, rel=1e-5)
    # fp32 DCT even under bf16 autocast.
    with torch.autocast('cpu', dtype=torch.bfloat16):
        value = RSVHeatSpectralL1Loss()(pred, target)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_band_mask_ignores_padding(images):
    pred, target = images
    mask = torch.tensor([[True, True, True], [True, False, False], [True, True, True]])
    garbage = pred.clone()
    garbage[1, 1:] += 100.0 * torch.randn(2, 24, 40, generator=torch.Generator().manual_seed(1))
    for loss in (RSVHeatPixelL1Loss(), RSVHeatSpectralL1Loss()):
        assert loss(garbage, target, mask).item() == pytest.approx(
            loss(pred, target, mask).item(), rel=1e-5)
        assert loss(garbage, target).item() > 10 * loss(pred, target).item()
    # The mean runs over the valid bands only.
    diff = (pred - target).abs()
    valid = torch.cat([diff[0].flatten(), diff[1, :1].flatten(), diff[2].flatten()])
    assert RSVHeatPixelL1Loss()(pred, target, mask).item() == pytest.approx(
        valid.mean().item(), rel=1e-6)
    with pytest.raises(ValueError, match='band_mask'):
        RSVHeatPixelL1Loss()(pred, target, mask[:2])


def test_contrastive_loss():
    loss = RSVHeatCosineContrastiveLoss(margin=0.2)
    # Perfect: every image equals its partner, other pairs orthogonal.
    a = torch.eye(6, 16) * 3.0
    assert loss(a, a * 0.5).item() == 0
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(8, 32, generator=g)
    partners = feats + 2.0 * torch.randn(8, 32, generator=g)  # imperfect
    true_pairs = loss(feats, partners).item()
    shuffled = loss(feats, partners.roll(1, 0)).item()
    assert 0 < true_pairs < shuffled
    # Collapsed embeddings gain nothing: the loss is the margin.
    same = torch.ones(4, 8)
    assert loss(same, same).item() == pytest.approx(0.2)
    # The gap to the negatives must reach the margin.
    close = torch.stack([torch.tensor([1.0, 0.0]), torch.tensor([0.8, 0.6])])  # cos 0.8
    assert RSVHeatCosineContrastiveLoss(margin=0.3)(close, close).item() == pytest.approx(0.1)
    assert RSVHeatCosineContrastiveLoss(margin=0.1)(close, close).item() == 0
    # Unpaired rows of `a` are negatives: a distractor equal to the partner
    # raises the loss of an otherwise perfect pairing.
    b = torch.eye(3, 16)[:2]
    assert loss(torch.eye(3, 16), b, torch.tensor([0, 1])).item() == 0
    distracted = torch.stack([b[0], b[1], b[0]])
    assert loss(distracted, b, torch.tensor([0, 1])).item() > 0
    # One pair with an unpaired negative is still ranked, not just aligned.
    assert loss(torch.eye(2, 16), torch.eye(2, 16)[1:], torch.tensor([0])).item() > 1
    # A lone pair (nothing to rank against): alignment 1 - cos.
    assert loss(feats[:1], -feats[:1]).item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match='no pairs'):
        loss(feats, feats[:0], torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match='distinct row'):
        loss(feats, feats[:2], torch.tensor([3, 3]))


def test_frequency_fusion_starts_as_average_and_learns():
    neck = RSVHeatFrequencyFusion(in_channels=[8, 16])
    neck.init_weights()
    g = torch.Generator().manual_seed(0)
    low = [torch.randn(2, 8, 6, 10, generator=g), torch.randn(2, 16, 3, 5, generator=g)]
    high = [torch.randn(2, 8, 6, 10, generator=g), torch.randn(2, 16, 3, 5, generator=g)]
    fused = neck(low, high)
    for f, lo, hi in zip(fused, low, high):
        torch.testing.assert_close(f, (lo + hi) / 2)
    sum(f.square().sum() for f in fused).backward()
    assert all(gate.weight.grad.abs().sum() > 0 for gate in neck.gates)
    with pytest.raises(ValueError, match='2 stages'):
        neck(low[:1], high[:1])


@pytest.mark.parametrize('size', [(64, 64), (50, 75)])
def test_decoder_reaches_input_size_per_modality(size):
    dec = RSVHeatReconstructionDecoder(in_channels=[32, 64], out_channels=dict(optical=3, sar=1),
                                       channels=32, min_channels=16)
    h16, w16 = -(-size[0] // 16), -(-size[1] // 16)
    feats = [torch.randn(3, 32, h16, w16), torch.randn(3, 64, -(-h16 // 2), -(-w16 // 2))]
    out = dec(feats, size, ['optical', 'sar', 'optical'])
    assert out.shape == (3, 3) + size
    assert out[1, 1:].abs().max() == 0 and out[1, 0].abs().max() > 0
    assert dec(feats, size, 'sar').shape == (3, 1) + size
    with pytest.raises(KeyError, match='ms'):
        dec(feats, size, 'ms')
    with pytest.raises(ValueError, match='num_groups'):
        RSVHeatReconstructionDecoder(in_channels=[32], channels=36, min_channels=12)
