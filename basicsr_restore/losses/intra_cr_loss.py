"""Intra-class contrastive regularisation (Intra-CR) of DRCNet, with its L1 term, as the official loss
computes it.

In a frozen VGG19 feature space the restored image (anchor) is pulled towards the ground truth (positive)
and pushed away from negatives built from the same training pair: the degraded input and its mixes with
the ground truth. Per tap ``i`` the term is the ratio

    r_i = D_i(p, y) / (sum_k w_k D_i(p, n_k) + 1e-7),   n_k = lambda_k * lq + (1 - lambda_k) * y,

with ``D`` the mean absolute difference of the features (positive and negative features carry no
gradient). The loss is ``loss_weight * (pixel_weight * L1(p, y) + cr_weight * sum_i layer_weight_i * r_i)``.
Official values: lambdas and denominator weights (1, 0.95, 0.9), taps relu1_1/relu2_1/relu3_1 with
weights 1/16, 1/8, 1/4 (the official list has a fourth weight, 1, that no tap uses), ``cr_weight`` 0.05,
``pixel_weight`` 1, no ImageNet normalisation of the input; ``loss_weight`` 0.5 (GoPro, Rain13k) or 1
(SIDD), applied to both DRCNet outputs.

The VGG19 weights are read from a local file (torchvision's ``vgg19-dcbb9e9d.pth``); nothing is downloaded.
"""
import logging
import os

import torch
import torch.nn.functional as F
from torch import nn

VGG19_FILE = 'vgg19-dcbb9e9d.pth'
#: where BasicSR's own VGG feature extractor looks for the same file (relative to the working directory)
DEFAULT_VGG_WEIGHTS = os.path.join('experiments', 'pretrained_models', VGG19_FILE)
# torchvision's VGG19 ``features`` ("configuration E"): output channels of each 3x3 conv, 'M' = max-pool
_VGG19_CFG = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512, 512, 512, 'M', 512, 512, 512, 512, 'M')
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg_weight_candidates(given=None):
    """Where the VGG19 weights are looked for, in order: ``vgg_weights`` (when given), BasicSR's
    ``experiments/pretrained_models/`` (relative to the working directory), torch hub's cache
    (``torch.hub.get_dir()/checkpoints``, where torchvision keeps the file it downloaded). Nothing is downloaded."""
    places = [os.path.expanduser(str(given))] if given else []
    places += [DEFAULT_VGG_WEIGHTS, os.path.join(torch.hub.get_dir(), 'checkpoints', VGG19_FILE)]
    return list(dict.fromkeys(places))


def _read_vgg_file(path):
    """torchvision's VGG19 file as a state dict (tensors only: nothing pickled is executed), or one clear error."""
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"IntraCRLoss: vgg_weights '{path}' cannot be read as a torch state dict ({reason}); expected "
                         f"torchvision's {VGG19_FILE}.") from None
    state = state.get('state_dict', state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ValueError(f"IntraCRLoss: '{path}' is not a torchvision vgg19 state dict (it holds a "
                         f"{type(state).__name__}); expected torchvision's {VGG19_FILE}.")
    return state


def find_vgg_weights(given=None):
    """The first existing file of :func:`vgg_weight_candidates`, or one error listing every place looked."""
    places = vgg_weight_candidates(given)
    for place in places:
        if os.path.isfile(place):
            return place
    looked = ''.join(f'\n  - {p} (absolute: {os.path.abspath(p)})' for p in places)
    raise FileNotFoundError(
        f"IntraCRLoss: torchvision's ImageNet VGG19 weights ({VGG19_FILE}, IMAGENET1K_V1, a state dict in "
        f"torchvision's vgg19 layout, features.0.weight ...; published at "
        f'https://download.pytorch.org/models/{VGG19_FILE}) were not found. Looked at:{looked}\nPut the file in one '
        'of these places or set the loss option vgg_weights to it. '
        'Nothing is downloaded. (vgg_weights: random builds an untrained VGG, for tests only.)')


def vgg19_layer_names():
    """Names of the modules of ``vgg19().features`` in order: ``conv1_1, relu1_1, ..., pool1, conv2_1, ...``."""
    names, block, conv = [], 1, 1
    for v in _VGG19_CFG:
        if v == 'M':
            names.append(f'pool{block}')
            block, conv = block + 1, 1
        else:
            names += [f'conv{block}_{conv}', f'relu{block}_{conv}']
            conv += 1
    return names


def vgg19_features(num_layers):
    """The first ``num_layers`` modules of torchvision's ``vgg19().features``, with the same indices."""
    layers, in_ch = [], 3
    for v in _VGG19_CFG:
        if v == 'M':
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_ch, v, 3, padding=1), nn.ReLU(inplace=False)]
            in_ch = v
    return nn.Sequential(*layers[:num_layers])


class VGG19Taps(nn.Module):
    """Frozen VGG19 prefix returning the activations at ``taps`` (BasicSR's names, :func:`vgg19_layer_names`,
    e.g. ``relu3_1``), shallow to deep.

    Args:
        taps (sequence of str): layers to return.
        weights (str or None): path to a state dict in torchvision's ``vgg19`` layout (``features.<i>.weight`` ...;
            None: :func:`find_vgg_weights` looks in the usual places),
            or ``'random'`` for an untrained network (tests only).
        use_input_norm (bool): normalise the input with the ImageNet mean/std first.
    """

    def __init__(self, taps, weights, use_input_norm=False):
        super().__init__()
        names = vgg19_layer_names()
        unknown = [t for t in taps if t not in names]
        if unknown or not taps:
            raise ValueError(f'VGG19 taps must be a non-empty list of layer names from {names}, got {list(taps)}')
        self.indices = [names.index(t) for t in taps]
        if self.indices != sorted(set(self.indices)):
            raise ValueError(f'VGG19 taps must be distinct and ordered shallow to deep, got {list(taps)}')
        self.features = vgg19_features(self.indices[-1] + 1)
        if weights == 'random':
            for m in self.features.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
                    nn.init.zeros_(m.bias)
        else:
            self.features.load_state_dict(self._read_weights(weights))
        self.use_input_norm = use_input_norm
        self.register_buffer('mean', torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def _read_weights(self, given):
        path = find_vgg_weights(given)
        log = logging.getLogger('basicsr')
        if given and path != os.path.expanduser(str(given)):
            log.warning(f"IntraCRLoss: vgg_weights '{given}' does not exist; using {path}.")
        log.info(f'IntraCRLoss: VGG19 weights from {path}.')
        state = _read_vgg_file(path)
        own = self.features.state_dict()
        wanted = {k: state.get(f'features.{k}') for k in own}
        missing = [f'features.{k}' for k, v in wanted.items() if v is None]
        if missing:
            raise ValueError(f"IntraCRLoss: '{path}' is not a torchvision vgg19 state dict (missing {missing[:4]}...); "
                             f"expected torchvision's {VGG19_FILE}.")
        broken = [f'features.{k}' for k, v in wanted.items() if not torch.isfinite(v).all()]
        if broken:
            raise ValueError(f"IntraCRLoss: '{path}' holds NaN or Inf in {broken[:4]}; use an intact copy of "
                             f'{VGG19_FILE}.')
        return wanted

    def train(self, mode=True):
        return super().train(False)  # always frozen, in eval mode

    def forward(self, x):
        if self.use_input_norm:
            x = (x - self.mean) / self.std
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.indices:
                taps.append(x)
        return taps


class IntraCRLoss(nn.Module):
    """DRCNet's training loss: L1 plus intra-class contrastive regularisation, called as
    ``loss(pred, target, lq)`` (``needs_lq``: the model passes the degraded input).

    Args:
        loss_weight (float): multiplies the whole loss (official 0.5 for GoPro/Rain13k, 1 for SIDD).
        reduction (str): ``'mean'`` or ``'sum'`` for the L1 term (the contrastive term is always a mean).
        pixel_weight (float): weight of the L1 term (official 1; 0 leaves the contrastive term alone, e.g.
            next to a separate pixel loss).
        cr_weight (float): weight of the contrastive term (official 0.05).
        neg_lambdas (sequence of float): share of ``lq`` in each negative (official 1, 0.95, 0.9).
        neg_weights (sequence of float or None): weights of the negatives in the denominator; None: the
            ``neg_lambdas`` (official).
        layer_taps (sequence of str): VGG19 layers (official relu1_1, relu2_1, relu3_1).
        layer_weights (sequence of float): one per tap (official 1/16, 1/8, 1/4).
        vgg_weights (str): path of torchvision's VGG19 weights ``vgg19-dcbb9e9d.pth``; absent, or missing there,
            the file is looked for in BasicSR's ``experiments/pretrained_models/`` and in torch hub's cache
            (:func:`vgg_weight_candidates`); ``'random'`` builds an untrained VGG (tests only; logs a warning).
        use_input_norm (bool): ImageNet mean/std normalisation before the VGG (official: no).

    The VGG runs on the anchor with gradients and on the positive and the negatives without; the distances
    and the ratios are computed in float32. ``target`` and ``lq`` never receive gradients.
    """
    needs_lq = True
    #: options that build it without external files (tests, ``bench`` without the VGG19 file)
    example_options = {'vgg_weights': 'random'}

    @classmethod
    def check_files(cls, kwargs):
        """``[(argument, problem)]`` the option check reports before a run: the VGG19 file must be found (nothing is
        downloaded)."""
        given = kwargs.get('vgg_weights')
        if given == 'random':
            return []
        places = vgg_weight_candidates(given)
        if any(os.path.isfile(p) for p in places):
            return []
        return [('vgg_weights', f"torchvision's VGG19 weights ({VGG19_FILE}) were not found; looked at "
                f"{', '.join(places)}; put the file in one of these places or set vgg_weights to its path "
                '(nothing is downloaded)')]

    def __init__(self, loss_weight=1.0, reduction='mean', pixel_weight=1.0, cr_weight=0.05,
                 neg_lambdas=(1.0, 0.95, 0.9), neg_weights=None, layer_taps=('relu1_1', 'relu2_1', 'relu3_1'),
                 layer_weights=(1 / 16, 1 / 8, 1 / 4), vgg_weights=None, use_input_norm=False):
        super().__init__()
        if reduction not in ('mean', 'sum'):
            raise ValueError(f"IntraCRLoss: reduction must be 'mean' or 'sum', got {reduction!r}")
        neg_weights = neg_lambdas if neg_weights is None else neg_weights
        if not neg_lambdas or len(neg_weights) != len(neg_lambdas):
            raise ValueError(f'IntraCRLoss: neg_weights {list(neg_weights)} must give one weight per negative '
                             f'of neg_lambdas {list(neg_lambdas)}')
        if len(layer_weights) != len(layer_taps):
            raise ValueError(f'IntraCRLoss: layer_weights {list(layer_weights)} must give one weight per tap of '
                             f'layer_taps {list(layer_taps)}')
        self.loss_weight, self.reduction = loss_weight, reduction
        self.pixel_weight, self.cr_weight = pixel_weight, cr_weight
        self.neg_lambdas = tuple(float(v) for v in neg_lambdas)
        self.neg_weights = tuple(float(v) for v in neg_weights)
        self.layer_weights = tuple(float(v) for v in layer_weights)
        if vgg_weights == 'random':
            logging.getLogger('basicsr').warning(
                'IntraCRLoss: vgg_weights is "random": the contrastive term uses an UNTRAINED VGG19. This is for '
                f'tests only; set vgg_weights to the path of torchvision\'s {VGG19_FILE} to train for real.')
        self.vgg = VGG19Taps(tuple(layer_taps), vgg_weights, use_input_norm)

    def contrastive(self, pred, target, lq):
        """``sum_i layer_weight_i * D_i(p, y) / (sum_k w_k D_i(p, n_k) + 1e-7)`` (no loss weight)."""
        refs = [target] + [lam * lq + (1 - lam) * target for lam in self.neg_lambdas]
        with torch.no_grad():
            ref_feats = self.vgg(torch.cat(refs, dim=0))
        total = 0
        for weight, anchor, refs_i in zip(self.layer_weights, self.vgg(pred), ref_feats):
            anchor = anchor.float()
            pos, *negs = refs_i.float().chunk(len(refs), dim=0)
            denominator = sum(w * F.l1_loss(anchor, n) for w, n in zip(self.neg_weights, negs))
            total = total + weight * F.l1_loss(anchor, pos) / (denominator + 1e-7)
        return total

    def forward(self, pred, target, lq, **kwargs):
        target, lq = target.detach(), lq.detach()
        loss = self.cr_weight * self.contrastive(pred, target, lq)
        if self.pixel_weight:
            loss = loss + self.pixel_weight * F.l1_loss(pred.float(), target.float(), reduction=self.reduction)
        return self.loss_weight * loss
