"""EIRN-R: a reconstruction of EIRN ("effective image restoration network", Zhang, Qingdao University), a
multi-stage network whose query-key mechanism gates features by the per-pixel importance of the degraded image.

**This is a reconstruction, not EIRN**: EIRN's code, weights and paper were never published; the only source is
the README of ``XinyueZhangqdu/EIRN`` (its abstract: a *key map* of features gated by a *query map* of per-pixel
importance computed from the degraded image, in the blocks and in a *multistage feature fusion block*).
docs/networks/EIRN.md says what is known and what is guessed.

Guessed: the skeleton is MPRNet (Zamir et al., CVPR 2021; written here from scratch) with two changes:

* **QKB** replaces the channel-attention block: ``y = x + K * Q``, key ``K = conv3x3(PReLU(conv3x3(x)))``, query
  ``Q = sigmoid(conv1x1(E))`` where ``E = PReLU(conv3x3(image))`` is the *query stem* of the stage's input patch,
  resized to the block's scale (1, 1/2, 1/4) once per stage and scale;
* **MFFB** replaces the cross-stage fusion: ``x + (conv1x1(enc) + conv1x1(dec)) * Q``.

Stage 3's query stem is ``n_feat + scale_orsnetfeats`` wide; stage 1's stems are computed per quadrant; one PReLU
is shared by the whole network, as MPRNet shares its ``act``. Everything else is MPRNet's (3 stages on 4 quadrants,
2 halves and the full image; 3-level U-Nets of widths ``C, C+S_u, C+2S_u``; supervised attention; an
original-resolution stage of width ``C+S_o``; no conv biases). With ``qk_in_blocks=False, qk_in_fusion=False`` the
network *is* MPRNet (only the fusion keys are named ``mffb{k}.key_{enc,dec}``).

Presets (MPRNet's widths): deblur ``96, 48, 32`` (default, 20,780,545 parameters), denoise ``80, 48, 32``
(16,256,689), derain ``40, 20, 16`` (3,761,761). No official checkpoint exists; the committed manifests pin this
module's own layout so that saved checkpoints stay loadable.
"""
import torch
import torch.nn.functional as F
from torch import nn

from basicsr_restore.archs.card import NetworkCard, Preset, SizeRule, count_indexed
from basicsr_restore.archs.layers import SAM, ChannelAttention, check_in_channels, check_input_channels, mean_of_views

QUERY_FROM = ('image', 'image+feat')
QUERY_CHANNELS = ('C', 1)


def conv(in_channels, out_channels, kernel_size):
    """Bias-free 'same' convolution (MPRNet's convention)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)


def half(x):
    return F.interpolate(x, scale_factor=0.5, mode='bilinear', align_corners=False)


# ------------------------------------------------------------------------------------ query-key parts
class QueryStem(nn.Module):
    """Features of the degraded image (all its ``in_channels``) at scales 1, 1/2, 1/4 (as many as ``widths``):
    ``PReLU(conv3x3(I_s))`` with ``I_s`` the bilinear resize of the image. Keys ``scale{i}.0`` (conv),
    ``scale{i}.1`` (PReLU)."""

    def __init__(self, widths, act, in_channels=3):
        super().__init__()
        for i, width in enumerate(widths):
            self.add_module(f'scale{i}', nn.Sequential(conv(in_channels, width, 3), act))
        self.num_scales = len(widths)

    def forward(self, img):
        maps = []
        for i in range(self.num_scales):
            if i:
                img = half(img)
            maps.append(getattr(self, f'scale{i}')(img))
        return maps


class QueryGate(nn.Conv2d):
    """The query map ``Q = sigmoid(conv1x1(E))`` (``query_from='image'``) or ``sigmoid(conv1x1([E, x]))``
    (``'image+feat'``), with ``channels`` output channels, or 1 broadcast over them (``query_channels=1``)."""

    def __init__(self, stem_channels, channels, query_from='image', query_channels='C'):
        with_feat = query_from == 'image+feat'
        super().__init__(stem_channels + (channels if with_feat else 0),
                         channels if query_channels == 'C' else 1, kernel_size=1, bias=False)
        self.with_feat = with_feat

    def forward(self, e, x):
        if self.with_feat:
            e = torch.cat([e, x], dim=1)
        return torch.sigmoid(super().forward(e))


class QueryKey(nn.Module):
    """Key map ``conv3x3(PReLU(conv3x3(x)))`` gated by the query map of the degraded image."""

    def __init__(self, channels, stem_channels, act, **gate_kwargs):
        super().__init__()
        self.key = nn.Sequential(conv(channels, channels, 3), act, conv(channels, channels, 3))
        self.query = QueryGate(stem_channels, channels, **gate_kwargs)

    def forward(self, x, e):
        return self.key(x) * self.query(e, x)


class QKB(nn.Module):
    """Query-key block, EIRN-R's replacement of MPRNet's CAB: ``x + K * Q``."""

    def __init__(self, channels, stem_channels, act, **gate_kwargs):
        super().__init__()
        self.qk = QueryKey(channels, stem_channels, act, **gate_kwargs)

    def forward(self, x, e):
        return x + self.qk(x, e)


class MFFB(nn.Module):
    """Multistage feature fusion: ``x + (key_enc(enc) + key_dec(dec)) * Q`` (1x1 convs), from the previous
    stage's encoder/decoder features at the same scale. Without ``query`` (``qk_in_fusion=False``) this is
    MPRNet's plain cross-stage fusion ``x + key_enc(enc) + key_dec(dec)``."""

    def __init__(self, in_channels, channels, stem_channels, gated, **gate_kwargs):
        super().__init__()
        self.key_enc = nn.Conv2d(in_channels, channels, kernel_size=1, bias=False)
        self.key_dec = nn.Conv2d(in_channels, channels, kernel_size=1, bias=False)
        self.query = QueryGate(stem_channels, channels, **gate_kwargs) if gated else None

    def forward(self, x, enc, dec, e=None):
        key = self.key_enc(enc) + self.key_dec(dec)
        if self.query is not None:
            key = key * self.query(e, x)
        return x + key


# ------------------------------------------------------------------------- MPRNet's parts (ablation)
class CAB(nn.Module):
    """MPRNet's channel-attention block (``qk_in_blocks=False``): ``x + CA(conv3x3(PReLU(conv3x3(x))))``.
    Takes (and ignores) the query-stem map so that it is interchangeable with :class:`QKB`."""

    def __init__(self, channels, reduction, act):
        super().__init__()
        self.body = nn.Sequential(conv(channels, channels, 3), act, conv(channels, channels, 3))
        self.CA = ChannelAttention(channels, reduction)

    def forward(self, x, e=None):
        return x + self.CA(self.body(x))


class BlockSeq(nn.Sequential):
    """A sequence whose QKB/CAB members also receive the query-stem map ``e``."""

    def forward(self, x, e=None):
        for module in self:
            x = module(x, e) if isinstance(module, (QKB, CAB)) else module(x)
        return x


class DownSample(nn.Module):
    """Bilinear x0.5, then 1x1 conv ``channels -> channels + extra``."""

    def __init__(self, channels, extra):
        super().__init__()
        self.down = nn.Sequential(nn.Upsample(scale_factor=0.5, mode='bilinear', align_corners=False),
                                  nn.Conv2d(channels, channels + extra, 1, bias=False))

    def forward(self, x):
        return self.down(x)


class UpSample(nn.Module):
    """Bilinear x2, then 1x1 conv ``channels + extra -> channels``."""

    def __init__(self, channels, extra):
        super().__init__()
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode='bilinear', align_corners=False),
                                nn.Conv2d(channels + extra, channels, 1, bias=False))

    def forward(self, x):
        return self.up(x)


# --------------------------------------------------------------------------------------- the stages
class Encoder(nn.Module):
    """3-level encoder, 2 blocks per level; with ``fusion`` an MFFB after each level (stage 2)."""

    def __init__(self, widths, extra, make_block, fusion=False, qk_in_fusion=True, **gate_kwargs):
        super().__init__()
        for i, width in enumerate(widths, 1):
            self.add_module(f'encoder_level{i}', BlockSeq(make_block(width, width), make_block(width, width)))
        self.down12 = DownSample(widths[0], extra)
        self.down23 = DownSample(widths[1], extra)
        self.fusion = fusion
        if fusion:
            for i, width in enumerate(widths, 1):
                self.add_module(f'mffb{i}', MFFB(width, width, width, qk_in_fusion, **gate_kwargs))

    def forward(self, x, queries, encoder_outs=None, decoder_outs=None):
        outs = []
        for i in range(3):
            if i:
                x = (self.down12, self.down23)[i - 1](x)
            x = getattr(self, f'encoder_level{i + 1}')(x, queries[i])
            if self.fusion:
                x = getattr(self, f'mffb{i + 1}')(x, encoder_outs[i], decoder_outs[i], queries[i])
            outs.append(x)
        return outs


class Decoder(nn.Module):
    """3-level decoder, 2 blocks per level; skips pass through one block and are added after upsampling."""

    def __init__(self, widths, extra, make_block):
        super().__init__()
        for i, width in enumerate(widths, 1):
            self.add_module(f'decoder_level{i}', BlockSeq(make_block(width, width), make_block(width, width)))
        self.skip_attn1 = make_block(widths[0], widths[0])
        self.skip_attn2 = make_block(widths[1], widths[1])
        self.up21 = UpSample(widths[0], extra)
        self.up32 = UpSample(widths[1], extra)

    def forward(self, outs, queries):
        enc1, enc2, enc3 = outs
        q1, q2, q3 = queries
        dec3 = self.decoder_level3(enc3, q3)
        dec2 = self.decoder_level2(self.up32(dec3) + self.skip_attn2(enc2, q2), q2)
        dec1 = self.decoder_level1(self.up21(dec2) + self.skip_attn1(enc1, q1), q1)
        return [dec1, dec2, dec3]


class ORB(nn.Module):
    """Original-resolution block: ``num_cab`` blocks and a conv3x3, plus the input."""

    def __init__(self, width, num_cab, make_block):
        super().__init__()
        self.body = BlockSeq(*[make_block(width, width) for _ in range(num_cab)], conv(width, width, 3))

    def forward(self, x, e=None):
        return x + self.body(x, e)


class ORSNet(nn.Module):
    """Stage 3: 3 ORBs at width ``C+S_o``, each followed by an MFFB injection of stage 2's encoder and
    decoder features of one level, upsampled to full resolution."""

    def __init__(self, n_feat, scale_orsnetfeats, scale_unetfeats, num_cab, make_block, qk_in_fusion=True,
                 **gate_kwargs):
        super().__init__()
        width = n_feat + scale_orsnetfeats
        for i in (1, 2, 3):
            self.add_module(f'orb{i}', ORB(width, num_cab, make_block))
        self.up_enc1 = UpSample(n_feat, scale_unetfeats)
        self.up_dec1 = UpSample(n_feat, scale_unetfeats)
        mid = n_feat + scale_unetfeats
        self.up_enc2 = nn.Sequential(UpSample(mid, scale_unetfeats), UpSample(n_feat, scale_unetfeats))
        self.up_dec2 = nn.Sequential(UpSample(mid, scale_unetfeats), UpSample(n_feat, scale_unetfeats))
        for i in (1, 2, 3):
            self.add_module(f'mffb{i}', MFFB(n_feat, width, width, qk_in_fusion, **gate_kwargs))

    def forward(self, x, encoder_outs, decoder_outs, e=None):
        (enc1, enc2, enc3), (dec1, dec2, dec3) = encoder_outs, decoder_outs
        x = self.mffb1(self.orb1(x, e), enc1, dec1, e)
        x = self.mffb2(self.orb2(x, e), self.up_enc1(enc2), self.up_dec1(dec2), e)
        return self.mffb3(self.orb3(x, e), self.up_enc2(enc3), self.up_dec2(dec3), e)


# ------------------------------------------------------------------------- batch <-> patch helpers
def quadrants_to_halves(t):
    """(4B, ...) ordered [left-top, right-top, left-bottom, right-bottom] -> (2B, ...) [top, bottom]."""
    lt, rt, lb, rb = t.chunk(4, dim=0)
    return torch.cat([torch.cat([lt, rt], dim=3), torch.cat([lb, rb], dim=3)], dim=0)


def halves_to_full(t):
    """(2B, ...) ordered [top, bottom] -> (B, ...)."""
    top, bottom = t.chunk(2, dim=0)
    return torch.cat([top, bottom], dim=2)


def read_arguments(layout):
    """The arguments an EIRN checkpoint shows: the widths ``C`` (first stem convolution), ``S_u`` (the U-Net's
    first downsampling adds it) and ``S_o`` (stage 3 is ``C + S_o`` wide), the blocks per ORB, and the input
    channels where they are not 3."""
    stem = layout['shallow_feat1.0.weight']
    n_feat = stem[0]
    kwargs = {'n_feat': n_feat, 'scale_unetfeats': layout['stage1_encoder.down12.down.1.weight'][0] - n_feat,
              'scale_orsnetfeats': layout['tail.weight'][1] - n_feat}
    if stem[1] != 3:
        kwargs['in_channels'] = stem[1]
    blocks = count_indexed(layout, 'stage3_orsnet.orb1.body.')
    return [dict(kwargs, num_cab=blocks - 1), dict(kwargs, num_cab=blocks)]


CARD = NetworkCard(
    name='EIRN',
    paper='EIRN-R: a reconstruction of EIRN (Zhang, Qingdao University; code, weights and paper unpublished) '
          'on the MPRNet skeleton (Zamir et al., CVPR 2021)',
    size=lambda **_: SizeRule(8, 0, 'stage 1 works on quadrants that its U-Net halves twice'),
    presets={
        'deblur': Preset({'n_feat': 96, 'scale_unetfeats': 48, 'scale_orsnetfeats': 32}, 20_780_545,
                         'EIRN_deblur.json', "GoPro (this package's preset)"),
        'denoise': Preset({'n_feat': 80, 'scale_unetfeats': 48, 'scale_orsnetfeats': 32}, 16_256_689,
                          'EIRN_denoise.json', "SIDD (this package's preset)"),
        'derain': Preset({'n_feat': 40, 'scale_unetfeats': 20, 'scale_orsnetfeats': 16}, 3_761_761,
                         'EIRN_derain.json', 'Rain13K (this package\'s preset, MPRNet\'s widths)'),
    },
    checkpoint_key=None,
    outputs=('stage 1', 'stage 2', 'stage 3 (final)'),
    tiny={'n_feat': 8, 'scale_unetfeats': 4, 'scale_orsnetfeats': 4, 'num_cab': 1},
    checkpoint_blocks=('QKB', 'CAB', 'MFFB'),
    read_arguments=read_arguments,
    half_precision_db={'fp16': 79.5, 'bf16': 61.7},  # scripts/half_precision.py
)


class EIRN(nn.Module):
    """EIRN-R (reconstruction of EIRN, see the module docstring). Returns ``[stage1, stage2, stage3]``, all
    full resolution, the last one final (MPRNet's own order is the reverse).

    Args:
        n_feat (int), scale_unetfeats (int), scale_orsnetfeats (int): widths ``C, S_u, S_o``; U-Net levels
            are ``C, C+S_u, C+2S_u`` wide, stage 3 is ``C+S_o``. Presets: deblur 96/48/32 (default),
            denoise 80/48/32, derain 40/20/16 (MPRNet's). Any other values are non-preset, for experiments.
        num_cab (int): blocks per ORB of stage 3 (8).
        qk_in_blocks (bool): QKB blocks (True) or MPRNet's channel-attention blocks (False, ablation).
        qk_in_fusion (bool): query-gated MFFB fusion (True) or MPRNet's plain additive fusion (False).
        query_from (str): query map from the image stem only (``'image'``) or from ``[stem, features]``
            (``'image+feat'``).
        query_channels: ``'C'`` (one query per pixel and channel) or ``1`` (one per pixel, broadcast).
        reduction (int): channel reduction of the channel attention; used only with ``qk_in_blocks=False``.
        in_channels (int): input channels, 3 (default) or a multiple of 3: RGB views stacked, e.g. 6 for DPDD's
            left + right dual-pixel views (``DualPixelDefocusDataset``). They feed the three shallow convs and the
            query stems (the query map is the degraded image's); the stage outputs stay RGB, residual to the
            **mean of the views** (of the stage's patches), which the supervised attention modules also take as
            their image. Only the first convs of ``shallow_feat{1,2,3}`` and ``query_stem*`` change shape.
    """
    card = CARD
    #: what the option check and the editor schema add to the signature's types (a tuple: one of these words)
    OPTION_RULES = {'query_from': QUERY_FROM, 'query_channels': QUERY_CHANNELS}

    def __init__(self, n_feat=96, scale_unetfeats=48, scale_orsnetfeats=32, num_cab=8, qk_in_blocks=True,
                 qk_in_fusion=True, query_from='image', query_channels='C', reduction=4, in_channels=3):
        super().__init__()
        self.size_rule = self.card.size()
        self.in_channels = check_in_channels('EIRN', in_channels)
        if query_from not in QUERY_FROM:
            raise ValueError(f'EIRN: query_from must be one of {QUERY_FROM}, got {query_from!r}')
        if query_channels not in QUERY_CHANNELS:
            raise ValueError(f"EIRN: query_channels must be 'C' or 1, got {query_channels!r}")
        gate = dict(query_from=query_from, query_channels=query_channels)
        act = nn.PReLU()  # one slope shared by every block, as in MPRNet

        def make_block(width, stem_width):
            if qk_in_blocks:
                return QKB(width, stem_width, act, **gate)
            return CAB(width, reduction, act)

        c, s_u, s_o = n_feat, scale_unetfeats, scale_orsnetfeats
        widths = (c, c + s_u, c + 2 * s_u)
        self.qk_in_blocks, self.qk_in_fusion = qk_in_blocks, qk_in_fusion
        # a stage needs query stems when its blocks or its fusion are gated (stage 1 has no fusion)
        if qk_in_blocks:
            self.query_stem1 = QueryStem(widths, act, in_channels)
        if qk_in_blocks or qk_in_fusion:
            self.query_stem2 = QueryStem(widths, act, in_channels)
            self.query_stem3 = QueryStem((c + s_o,), act, in_channels)

        self.shallow_feat1 = BlockSeq(conv(in_channels, c, 3), make_block(c, c))
        self.shallow_feat2 = BlockSeq(conv(in_channels, c, 3), make_block(c, c))
        self.shallow_feat3 = BlockSeq(conv(in_channels, c, 3), make_block(c, c + s_o))
        self.stage1_encoder = Encoder(widths, s_u, make_block)
        self.stage1_decoder = Decoder(widths, s_u, make_block)
        self.stage2_encoder = Encoder(widths, s_u, make_block, fusion=True, qk_in_fusion=qk_in_fusion, **gate)
        self.stage2_decoder = Decoder(widths, s_u, make_block)
        self.stage3_orsnet = ORSNet(c, s_o, s_u, num_cab, make_block, qk_in_fusion=qk_in_fusion, **gate)
        self.sam12 = SAM(c, kernel_size=1, bias=False)
        self.sam23 = SAM(c, kernel_size=1, bias=False)
        self.concat12 = conv(2 * c, c, 3)
        self.concat23 = conv(2 * c, c + s_o, 3)
        self.tail = conv(c + s_o, 3, 3)

    def forward(self, x):
        check_input_channels('EIRN', x, self.in_channels)
        self.size_rule.check('EIRN', x)
        h, w = x.shape[-2:]
        # the patches of each stage are processed as one batch: 4B quadrants, 2B halves
        halves = torch.cat([x[:, :, :h // 2], x[:, :, h // 2:]], dim=0)
        quads = torch.cat([halves[..., :w // 2], halves[..., w // 2:]], dim=0)
        quads = torch.cat([quads.chunk(4)[i] for i in (0, 2, 1, 3)], dim=0)  # lt, rt, lb, rb
        none3 = [None] * 3

        # stage 1: four quadrants through the encoder, the two halves through the decoder
        q1 = self.query_stem1(quads) if self.qk_in_blocks else none3
        q1_halves = [quadrants_to_halves(q) if q is not None else None for q in q1]
        enc1 = [quadrants_to_halves(f) for f in self.stage1_encoder(self.shallow_feat1(quads, q1[0]), q1)]
        dec1 = self.stage1_decoder(enc1, q1_halves)
        sam_feats, stage1_img = self.sam12(dec1[0], mean_of_views(halves))

        # stage 2: two halves through the encoder (fused with stage 1), the full image through the decoder
        stems = self.qk_in_blocks or self.qk_in_fusion
        q2 = self.query_stem2(halves) if stems else none3
        q2_full = [halves_to_full(q) if q is not None else None for q in q2]
        feats = self.concat12(torch.cat([self.shallow_feat2(halves, q2[0]), sam_feats], dim=1))
        enc2 = [halves_to_full(f) for f in self.stage2_encoder(feats, q2, enc1, dec1)]
        dec2 = self.stage2_decoder(enc2, q2_full)
        sam_feats, stage2_img = self.sam23(dec2[0], mean_of_views(x))

        # stage 3: full resolution
        q3 = self.query_stem3(x)[0] if stems else None
        feats = self.concat23(torch.cat([self.shallow_feat3(x, q3), sam_feats], dim=1))
        feats = self.stage3_orsnet(feats, enc2, dec2, q3)
        return [halves_to_full(stage1_img), stage2_img, self.tail(feats) + mean_of_views(x)]
