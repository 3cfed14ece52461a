"""RS-vHeat self-supervised pretraining as an mmpretrain algorithm.

Spec section 3: frequency-domain hierarchical masking, multi-domain
reconstruction (pixel and DCT spectrum) and optical-SAR contrast. The
authors did not release this part; the design choices left open by the
paper are documented where they are made (transform, necks, losses).
"""
import copy
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.distributed as dist
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
# Sub-modules are built from mmpretrain's registry (which falls back to the
# root, where rsvheat_mm's components live), so mmpretrain necks such as
# NonLinearNeck resolve too.
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from torch import Tensor

from rsvheat_mm.registry import MODELS

from .data_preprocessor import RSVHeatPretrainDataPreprocessor

__all__ = ['RSVHeatPretrain']

TARGET_MODES = ('image', 'cross')


@MODELS.register_module()
class RSVHeatPretrain(BaseSelfSupervisor):
    """RS-vHeat pretraining (Hu et al., ICCV 2025).

    Per batch (image ``x`` split into low view ``l`` and high view ``h`` by
    :class:`RSVHeatFrequencyMasking`; co-registered partners, e.g. the SAR
    image of an optical one, go through the same steps):

    1. the shared backbone encodes all low and high views in one pass, each
       sample through its modality's stem;
    2. the ``neck`` (``fuse_frequency``) fuses the low and high features of
       the stages ``fuse_indices`` (stages 3 and 4);
    3. the ``decoder`` reconstructs ``x`` from the fused features; L_spa =
       L1 in pixel space, L_fre = L1 between DCT spectra;
    4. the ``projector`` embeds the pooled stage-``contrast_index`` features
       of the low and of the high view; L_con ranks each image's embedding
       closest to its partner's (low with low, high with high), against the
       other images of the batch. Samples without a partner have no
       positive (they only serve as negatives).

    Multi-process safety: the projector runs on *every* batch, paired or
    not, so every rank enters the same collectives (the recipe's SyncBN
    projector all-reduces its batch statistics in forward and backward; a
    rank that skipped it would hang the others). A batch without any pair
    embeds its images all the same and contributes ``0 * sum(embeddings)``:
    L_con is exactly 0, every projector parameter gets a zero gradient (DDP
    sees no unused parameter), and the loss of batches with pairs is
    unchanged. The only skip: a one-image batch whose projector has no
    cross-process statistics (per-process BatchNorm cannot normalise one
    sample; nothing collective is missed).

    Pretext variants (``target_mode``; the spec's section 3 asks for them):
    the low and high views add up to the image, so with ``'image'`` (the
    paper's description, default) the reconstruction target is entirely in
    the encoder's input. ``'cross'`` withholds it: there is no fusion, each
    view's features alone are decoded into the *other* view (low -> high,
    high -> low), L_spa/L_fre averaging both directions. The other variant,
    a frequency band dropped from both views, lives in the data pipeline
    (``RSVHeatFrequencyMasking(drop_range=...)``) and works with either
    mode. ``docs/pretraining.md`` compares them.

    The backbone is a plain :class:`RSVHeat` under ``backbone.``: the
    checkpoint initialises any downstream RSVHeat via
    ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')``.

    Args:
        backbone (dict): :class:`RSVHeat` config. Its ``out_indices`` must
            hold ``fuse_indices`` and ``contrast_index``; keep (0, 1, 2, 3)
            so the checkpoint also carries every output norm downstream
            models load.
        neck (dict, optional): Fusion config (:class:`RSVHeatFrequencyFusion`);
            ``in_channels`` is filled in from the backbone when omitted. Must
            be None with ``target_mode='cross'`` (nothing is fused).
        decoder (dict): :class:`RSVHeatReconstructionDecoder` config;
            ``in_channels``, ``in_stride`` and ``out_channels`` (the
            backbone's stems) are filled in when omitted.
        projector (dict): Contrastive projector taking a tuple of
            ``(B, C, H, W)`` features and returning a tuple whose first item
            is ``(B, D)``, e.g. mmpretrain's ``NonLinearNeck`` with
            ``with_avg_pool=True`` (the default, with BatchNorm as in SimCLR:
            centring over the batch keeps the embeddings of different scenes
            from all pointing one way, where the cosine loss has no
            gradient); ``in_channels`` is filled in when omitted. It runs
            on every batch (see above).
        loss_spa (dict): Pixel L1 config. Defaults to
            ``RSVHeatPixelL1Loss`` with weight 1.
        loss_fre (dict): Spectral L1 config. Defaults to
            ``RSVHeatSpectralL1Loss`` with weight 1.
        loss_con (dict): Contrastive config. Defaults to
            ``RSVHeatCosineContrastiveLoss`` with weight 1.
        fuse_indices (Sequence[int]): Backbone stages fused and decoded.
            Defaults to (2, 3) (stages 3 and 4).
        contrast_index (int): Backbone stage embedded for L_con. Defaults
            to 3.
        target_mode (str): ``'image'``: the fused features of both views
            reconstruct the image (default, the paper's description);
            ``'cross'``: each view's features predict the other view.
        data_preprocessor (dict, optional): Defaults to
            :class:`RSVHeatPretrainDataPreprocessor`.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict = dict(type='RSVHeatFrequencyFusion'),
                 decoder: dict = dict(type='RSVHeatReconstructionDecoder'),
                 projector: dict = dict(type='NonLinearNeck', hid_channels=2048,
                                        out_channels=256, num_layers=2, with_bias=True,
                                        with_last_bn=False, with_avg_pool=True,
                                        norm_cfg=dict(type='BN1d')),
                 loss_spa: dict = dict(type='RSVHeatPixelL1Loss', loss_weight=1.0),
                 loss_fre: dict = dict(type='RSVHeatSpectralL1Loss', loss_weight=1.0),
                 loss_con: dict = dict(type='RSVHeatCosineContrastiveLoss', loss_weight=1.0),
                 fuse_indices: Sequence[int] = (2, 3),
                 contrast_index: int = 3,
                 target_mode: str = 'image',
                 data_preprocessor: Optional[Union[dict, torch.nn.Module]] = None,
                 init_cfg: Optional[dict] = None):
        name = self.__class__.__name__
        if target_mode not in TARGET_MODES:
            raise ValueError(f'{name}: target_mode must be one of {TARGET_MODES}, got '
                             f'{target_mode!r}')
        if (neck is None) != (target_mode == 'cross'):
            raise ValueError(f"{name}: target_mode='cross' decodes each view alone and "
                             "needs neck=None; 'image' needs the fusion neck")
        backbone = MMPRETRAIN_MODELS.build(backbone) if isinstance(backbone, dict) else backbone
        for attr in ('dims', 'out_indices', 'in_channels'):
            if not hasattr(backbone, attr):
                raise TypeError(f'{name}: the backbone must be an RSVHeat (no `{attr}` on '
                                f'{type(backbone).__name__})')
        needed = sorted(set(fuse_indices) | {contrast_index})
        absent = [i for i in needed if i not in backbone.out_indices]
        if absent:
            raise ValueError(f'{name}: backbone.out_indices={backbone.out_indices} lacks stages '
                             f'{absent} used by fuse_indices={tuple(fuse_indices)} / '
                             f'contrast_index={contrast_index}')
        fuse_indices = tuple(fuse_indices)
        fused_dims = [backbone.dims[i] for i in fuse_indices]

        if neck is not None:
            neck = copy.deepcopy(neck)
            neck.setdefault('in_channels', fused_dims)
        decoder = copy.deepcopy(decoder)
        decoder.setdefault('in_channels', fused_dims)
        decoder.setdefault('in_stride', 4 * 2**fuse_indices[0])
        decoder.setdefault('out_channels', dict(backbone.in_channels))
        missing = set(backbone.in_channels) - set(decoder['out_channels'])
        if missing:
            raise ValueError(f'{name}: decoder.out_channels has no head for the backbone '
                             f'stems {sorted(missing)}')
        projector = copy.deepcopy(projector)
        projector.setdefault('in_channels', backbone.dims[contrast_index])

        if data_preprocessor is None:
            data_preprocessor = dict(type='RSVHeatPretrainDataPreprocessor')
        super().__init__(backbone=backbone, neck=neck, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        if not isinstance(self.data_preprocessor, RSVHeatPretrainDataPreprocessor):
            raise TypeError(f'{name}: data_preprocessor must be an '
                            f'RSVHeatPretrainDataPreprocessor (it batches the paired '
                            f'frequency views), got {type(self.data_preprocessor).__name__}')
        self.fuse_indices = fuse_indices
        self.contrast_index = contrast_index
        self.target_mode = target_mode
        self.decoder = MMPRETRAIN_MODELS.build(decoder)
        self.projector = MMPRETRAIN_MODELS.build(projector)
        self.loss_spa = MMPRETRAIN_MODELS.build(loss_spa)
        self.loss_fre = MMPRETRAIN_MODELS.build(loss_fre)
        self.loss_con = MMPRETRAIN_MODELS.build(loss_con)

    # -- helpers -------------------------------------------------------------------
    def _stage(self, feats, index):
        return feats[self.backbone.out_indices.index(index)]

    def _embed(self, feat: Tensor) -> Tensor:
        out = self.projector((feat, ))
        return out[0] if isinstance(out, (tuple, list)) else out

    @staticmethod
    def _modalities(data_samples, key='modality') -> List[str]:
        return [ds.get(key) for ds in data_samples]

    def _gather_batch(self, inputs: List[Tensor], data_samples):
        """Primary images followed by the partners of the paired samples."""
        img, low, high = inputs
        mods = self._modalities(data_samples)
        pairs = [i for i, ds in enumerate(data_samples) if 'partner_inputs' in ds]
        if not pairs:
            return img, low, high, mods, pairs
        partners = [data_samples[i].partner_inputs for i in pairs]
        for i, p in zip(pairs, partners):
            if p.shape[-2:] != img.shape[-2:]:
                raise ValueError(
                    f'{self.__class__.__name__}: partner of '
                    f'{data_samples[i].get("img_path")!r} is {tuple(p.shape[-2:])}, the image '
                    f'{tuple(img.shape[-2:])}; co-registered pairs share their geometry')
        bands = max([img.shape[1]] + [p.shape[1] for p in partners])
        pad = RSVHeatPretrainDataPreprocessor.pad_bands
        stacked = torch.stack([pad(p, bands) for p in partners], dim=1)  # (3, P, C, H, W)
        views = [torch.cat([pad(x, bands), s]) for x, s in zip((img, low, high), stacked)]
        mods = mods + [data_samples[i].get('partner_modality') for i in pairs]
        return (*views, mods, pairs)

    # -- forward -------------------------------------------------------------------
    def extract_feat(self, inputs: Union[Tensor, List[Tensor]],
                     data_samples: Optional[list] = None):
        """Backbone features of the (unmasked) images."""
        x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        modality = self._modalities(data_samples) if data_samples else None
        return self.backbone(x, modality=modality)

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        if mode == 'tensor':
            return self.extract_feat(inputs, data_samples)
        return super().forward(inputs, data_samples, mode)

    def reconstruct(self, inputs: List[Tensor], data_samples) -> Dict[str, Tensor]:
        """Run encoder, fusion and decoder on a preprocessed batch.

        Returns a dict with ``pred`` and ``target`` (``(N, bands, H, W)``,
        normalised units; with ``target_mode='cross'`` ``(2N, ...)``: the
        high views predicted from the low ones, then the low views from the
        high ones), ``band_mask`` (same rows, ``(rows, bands)``), the
        low/high stage-``contrast_index`` features ``low_feat``/``high_feat``
        (``N`` rows), ``modalities`` and ``pairs`` (indices of the paired
        primaries; their partners are the rows after the ``B`` primaries, in
        order).
        """
        img, low, high, mods, pairs = self._gather_batch(inputs, data_samples)
        n = img.shape[0]
        unknown = sorted({m for m in mods if m not in self.backbone.in_channels}, key=str)
        if unknown:
            raise KeyError(f'{self.__class__.__name__}: modalities {unknown} have no backbone '
                           f'stem; stems: {list(self.backbone.in_channels)}')
        feats = self.backbone(torch.cat([low, high]), modality=mods + mods)
        low_f = [f[:n] for f in feats]
        high_f = [f[n:] for f in feats]
        if self.target_mode == 'image':
            fused = self.neck([self._stage(low_f, i) for i in self.fuse_indices],
                              [self._stage(high_f, i) for i in self.fuse_indices])
            out_mods, target = mods, img
        else:  # 'cross': the low rows' features predict the high view and vice versa
            fused = tuple(self._stage(feats, i) for i in self.fuse_indices)
            out_mods, target = mods + mods, torch.cat([high, low])
        pred = self.decoder(fused, img.shape[-2:], out_mods)
        bands = pred.shape[1]
        band_counts = torch.tensor([self.backbone.in_channels[m] for m in out_mods],
                                   device=img.device)
        band_mask = torch.arange(bands, device=img.device)[None] < band_counts[:, None]
        target = RSVHeatPretrainDataPreprocessor.pad_bands(target, bands)[:, :bands]
        return dict(pred=pred, target=target, band_mask=band_mask,
                    low_feat=self._stage(low_f, self.contrast_index),
                    high_feat=self._stage(high_f, self.contrast_index),
                    modalities=mods, pairs=pairs, num_primary=n - len(pairs))

    def loss(self, inputs: List[Tensor], data_samples) -> Dict[str, Tensor]:
        """L_spa, L_fre and L_con (see the class docstring)."""
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 3:
            raise ValueError(f'{self.__class__.__name__}: inputs must be [image, low, high] '
                             'from RSVHeatPretrainDataPreprocessor')
        out = self.reconstruct(inputs, data_samples)
        losses = dict(
            loss_spa=self.loss_spa(out['pred'], out['target'], out['band_mask']),
            loss_fre=self.loss_fre(out['pred'], out['target'], out['band_mask']))
        losses['loss_con'] = self._contrast(out['low_feat'], out['high_feat'], out['pairs'],
                                            out['num_primary'])
        return losses

    def _contrast(self, low_feat: Tensor, high_feat: Tensor, pairs: List[int],
                  num_primary: int) -> Tensor:
        """L_con of the rows ``[primaries..., partners...]`` (see the class
        docstring for why the projector runs even without a pair)."""
        rows = low_feat.shape[0]
        if rows < 2 and not self._projector_syncs():
            # Per-process BatchNorm cannot normalise one sample, and no
            # other rank waits for this call: skip, still reaching every
            # projector parameter.
            return sum(p.sum() for p in self.projector.parameters()) * 0.
        # Every primary image (paired or not) is a candidate, so unpaired
        # ones serve as extra negatives; each view gets its own projector
        # call (its own batch statistics with a BatchNorm projector).
        embeddings = [self._embed(feat) for feat in (low_feat, high_feat)]
        if not pairs:
            return sum(z.sum() for z in embeddings) * 0.
        pos = torch.tensor(pairs, device=low_feat.device)
        b = num_primary
        return sum(self.loss_con(z[:b], z[b:], pos) for z in embeddings) / 2

    def _projector_syncs(self) -> bool:
        """Whether the projector's statistics are shared across processes
        (SyncBN in a multi-process run): then every rank must call it."""
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return False
        return any(isinstance(m, torch.nn.SyncBatchNorm) for m in self.projector.modules())
