"""Losses of RS-vHeat pretraining (spec section 3), equal weights by default.

* :class:`RSVHeatPixelL1Loss` (L_spa): L1 between reconstruction and image.
* :class:`RSVHeatSpectralL1Loss` (L_fre): L1 between their orthonormal
  DCT-II spectra (the operator's own transform): the error of every
  frequency counts on its own, so a blurred reconstruction that misses the
  many small high-frequency coefficients is penalised for each of them.
* :class:`RSVHeatCosineContrastiveLoss` (L_con): cosine-similarity
  contrastive (ranking) loss between embeddings of co-registered
  optical/SAR pairs.

Batches may mix modalities with different band counts (zero-padded to the
largest); ``band_mask`` keeps the padded bands out of the pixel losses.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from rsvheat_mm.registry import MODELS
from ..layers.heat_conduction import dct2d

__all__ = ['RSVHeatPixelL1Loss', 'RSVHeatSpectralL1Loss', 'RSVHeatCosineContrastiveLoss']


def _masked_l1(pred: Tensor, target: Tensor, band_mask: Optional[Tensor]) -> Tensor:
    if pred.shape != target.shape:
        raise ValueError(f'prediction {tuple(pred.shape)} and target {tuple(target.shape)} '
                         'differ in shape')
    diff = (pred - target).abs()
    if band_mask is None:
        return diff.mean()
    if band_mask.shape != pred.shape[:2]:
        raise ValueError(f'band_mask must be (B, C) = {tuple(pred.shape[:2])}, got '
                         f'{tuple(band_mask.shape)}')
    weight = band_mask.to(diff.dtype)[:, :, None, None]
    count = weight.sum() * pred.shape[-2] * pred.shape[-1]
    return (diff * weight).sum() / count.clamp(min=1)


@MODELS.register_module()
class RSVHeatPixelL1Loss(nn.Module):
    """L_spa: mean absolute error in pixel space over the valid bands.

    Args:
        loss_weight (float): Weight of the term. Defaults to 1.
    """

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, pred: Tensor, target: Tensor, band_mask: Optional[Tensor] = None) -> Tensor:
        """``pred``/``target``: ``(B, C, H, W)``; ``band_mask``: bool ``(B, C)``,
        True for real (not zero-padded) bands."""
        return self.loss_weight * _masked_l1(pred.float(), target.float(), band_mask)


@MODELS.register_module()
class RSVHeatSpectralL1Loss(RSVHeatPixelL1Loss):
    """L_fre: mean absolute error between orthonormal 2-D DCT-II spectra.

    The transform runs in float32 with autocast disabled: under bf16 the
    DCT's matrix products would lose the small high-frequency coefficients
    this term exists to supervise.

    Args:
        loss_weight (float): Weight of the term. Defaults to 1.
    """

    def forward(self, pred: Tensor, target: Tensor, band_mask: Optional[Tensor] = None) -> Tensor:
        """Same arguments as :class:`RSVHeatPixelL1Loss`."""
        with torch.autocast(device_type=pred.device.type, enabled=False):
            spec_pred = dct2d(pred.float(), channels_last=False)
            spec_target = dct2d(target.float(), channels_last=False)
            return self.loss_weight * _masked_l1(spec_pred, spec_target, band_mask)


@MODELS.register_module()
class RSVHeatCosineContrastiveLoss(nn.Module):
    """L_con: cosine-similarity contrastive (ranking) loss across modalities.

    ``a`` holds the embeddings of one set of images (e.g. every optical
    image of the batch, paired or not), ``b`` those of the partners (e.g.
    the SAR images), ``b_k`` being co-registered with ``a[pos[k]]``. With
    cosine similarities ``s``, every true pair must beat every mismatched
    one by ``margin``, in both retrieval directions (the hinge ranking loss
    of cross-modal embedding learning)::

        L = 1/2 * ( mean_{k, j != pos[k]} max(0, margin - s(b_k, a_pos[k]) + s(b_k, a_j))
                  + mean_{k, l != k}      max(0, margin - s(a_pos[k], b_k) + s(a_pos[k], b_l)) )

    It is 0 exactly when the pairing is perfect (each image is closer to its
    partner than to any other candidate by ``margin``), positive otherwise,
    and larger for a shuffled pairing than for the true one. Unlike a plain
    ``1 - s`` alignment, collapsing all embeddings onto one vector does not
    lower it (the loss then equals ``margin``), so the projector has no
    incentive to collapse; unpaired images in ``a`` serve as extra
    negatives. Only with a single candidate on each side (nothing to rank
    against) does it fall back to the alignment ``1 - s``.

    Args:
        margin (float): Required similarity gap, in (0, 2]. Defaults to 0.2.
        loss_weight (float): Weight of the term. Defaults to 1.
    """

    def __init__(self, margin: float = 0.2, loss_weight: float = 1.0):
        super().__init__()
        if not 0 < margin <= 2:
            raise ValueError(f'{self.__class__.__name__}: margin must be in (0, 2], '
                             f'got {margin}')
        self.margin = margin
        self.loss_weight = loss_weight

    def forward(self, a: Tensor, b: Tensor, pos: Optional[Tensor] = None) -> Tensor:
        """Rank the pairs ``(a[pos[k]], b[k])`` above all mismatches.

        Args:
            a (Tensor): ``(N_a, D)`` embeddings.
            b (Tensor): ``(N_b, D)`` partner embeddings, ``N_b >= 1``.
            pos (Tensor, optional): ``(N_b,)`` row of ``a`` paired with each
                row of ``b``, distinct. Defaults to ``arange(N_b)``.
        """
        name = self.__class__.__name__
        if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
            raise ValueError(f'{name}: expected (N_a, D) and (N_b, D) embeddings, got '
                             f'{tuple(a.shape)} and {tuple(b.shape)}')
        if b.shape[0] == 0:
            raise ValueError(f'{name}: no pairs; the caller skips the term for batches '
                             'without partners')
        if pos is None:
            pos = torch.arange(b.shape[0], device=b.device)
        if pos.shape != (b.shape[0], ) or pos.unique().numel() != pos.numel() or \
                int(pos.min()) < 0 or int(pos.max()) >= a.shape[0]:
            raise ValueError(f'{name}: pos must give a distinct row of a (N_a={a.shape[0]}) '
                             f'for each of the {b.shape[0]} rows of b, got {pos.tolist()}')
        # (N_b, N_a) similarities; s(b_k, a_pos[k]) on the "diagonal".
        sim = F.normalize(b.float(), dim=1) @ F.normalize(a.float(), dim=1).t()
        k = torch.arange(b.shape[0], device=sim.device)
        true = sim[k, pos]
        terms = []
        b_neg = torch.ones_like(sim, dtype=torch.bool)
        b_neg[k, pos] = False
        if b_neg.any():  # b_k retrieving among all a
            terms.append(F.relu(self.margin - true[:, None] + sim)[b_neg].mean())
        cross = sim[:, pos]  # (N_b, N_b): s(b_l, a_pos[k]) at [l, k]
        a_neg = ~torch.eye(b.shape[0], dtype=torch.bool, device=sim.device)
        if a_neg.any():  # a_pos[k] retrieving among all b
            terms.append(F.relu(self.margin - true[None, :] + cross)[a_neg].mean())
        if not terms:
            return self.loss_weight * (1 - true).mean()
        return self.loss_weight * sum(terms) / len(terms)
