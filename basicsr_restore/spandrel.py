"""The five networks of this package in spandrel's registry: chaiNNer, ComfyUI and traiNNer-redux open their files.

    import spandrel
    import basicsr_restore.spandrel
    basicsr_restore.spandrel.install()          # once; adds MIRNet, ChaIR, IRNeXt, DRCNet, EIRN
    model = spandrel.ModelLoader().load_from_file('net_g_latest.pth')   # or an authors' release, or .safetensors

Detection is this package's own identification (:mod:`basicsr_restore.core.identify`): a state dict is claimed only when
its key layout is exactly an official configuration's or one rebuilt from the shapes, so a file of another network
is never claimed and spandrel's own architectures (and its error) stand. The descriptor restores like
``basicsr-restore infer`` without tiles: padded at the bottom/right to the network's size rule (spandrel's
``size_requirements``), the last output of a multi-output network, clamped to [0, 1].

``install`` needs spandrel (``pip install basicsr-restore[spandrel]``); nothing else here imports it.
"""
from basicsr_restore.core.errors import RestoreError
from basicsr_restore.core.identify import UnknownLayout, identify
from basicsr_restore.core.inference import final_output
from basicsr_restore.core.registry import network_classes
from basicsr_restore.core.state_dicts import load_into, strip_prefixes

#: half-precision support of each network: PSNR (dB) of its fp16 and bf16 outputs against fp32 on a real photo must
#: reach this (``tests/test_spandrel.py`` measures every network and checks the flags below against it)
PRECISION_BAR_DB = 45.0
#: every one of the five averages over the whole image somewhere (channel attention, dynamic filters, the spatial
#: deviation of DRCNet's SimAM): a tile sees other statistics than the whole picture, so spandrel's tiling changes
#: the result (``tests/test_spandrel.py`` checks that tiles are not exact for each)
TILING = 'DISCOURAGED'


def _spandrel():
    try:
        import spandrel
    except ImportError:
        raise RestoreError('basicsr_restore.spandrel needs spandrel: pip install "basicsr-restore[spandrel]" (or pip '
                           'install spandrel).') from None
    return spandrel


def _input_channels(kwargs):
    return int(kwargs.get('in_channels', kwargs.get('in_chn', 3)))


def identify_state(state, cls):
    """The :class:`~basicsr_restore.core.identify.Identified` configuration of ``cls`` whose layout is ``state``'s
    (prefixes such as ``module.``/``_orig_mod.`` stripped), or None."""
    state = {k: v for k, v in state.items() if hasattr(v, 'shape')}
    for wrapper in ('params_ema.', 'params.'):  # a safetensors file of this package: params_ema.<key>, params.<key>
        if any(k.startswith(wrapper) for k in state):
            state = {k[len(wrapper):]: v for k, v in state.items() if k.startswith(wrapper)}
            break
    state = {strip_prefixes(k)[0]: v for k, v in state.items()}
    if not state:
        return None, state
    try:
        return identify(state, [cls]), state
    except UnknownLayout:
        return None, state


def architecture(cls, precision):
    """A spandrel ``Architecture`` for the network class ``cls`` (``precision``: fp16/bf16 support flags)."""
    spandrel = _spandrel()

    class OurArchitecture(spandrel.Architecture):
        def __init__(self):
            super().__init__(id=cls.__name__, name=cls.__name__, detect=self.claims)

        @staticmethod
        def claims(state):
            return identify_state(state, cls)[0] is not None

        def load(self, state_dict):
            found, state = identify_state(state_dict, cls)
            if found is None:
                raise spandrel.UnsupportedModelError(f'not a {cls.__name__} state dict')
            net = cls(**found.kwargs)
            load_into(net, state, where=f'{cls.__name__} weights (spandrel)')
            rule = net.size_rule
            return spandrel.ImageModelDescriptor(
                net, state, self, purpose='Restoration', tags=[found.preset or 'custom'],
                supports_half=precision['fp16'], supports_bfloat16=precision['bf16'], scale=1,
                input_channels=_input_channels(found.kwargs), output_channels=3,
                size_requirements=spandrel.SizeRequirements(minimum=rule.min_size, multiple_of=rule.multiple),
                tiling=getattr(spandrel.ModelTiling, TILING), call_fn=lambda model, image: final_output(model(image)))

    OurArchitecture.__name__ = OurArchitecture.__qualname__ = f'{cls.__name__}Architecture'
    return OurArchitecture()


def install(registry=None):
    """Add the five networks to spandrel's registry (``spandrel.MAIN_REGISTRY`` by default), detected before spandrel's
    own architectures (our detection is exact). Idempotent; returns the ids added."""
    spandrel = _spandrel()
    registry = spandrel.MAIN_REGISTRY if registry is None else registry
    others = tuple(a.architecture.id for a in registry.architectures('insertion'))
    added = []
    for cls in network_classes():
        present = registry.get(cls.__name__)
        if present is not None:
            if type(present.architecture).__name__ != f'{cls.__name__}Architecture':
                raise RestoreError(f'spandrel already has an architecture {cls.__name__!r} '
                                   f'({type(present.architecture).__module__}); basicsr-restore does not replace it.')
            continue
        arch = architecture(cls, precision_of(cls))
        registry.add(spandrel.ArchSupport.from_architecture(arch, before=tuple(i for i in others
                                                                                if i != cls.__name__)))
        added.append(cls.__name__)
    return added


def precision_of(cls):
    """``{'fp16': bool, 'bf16': bool}`` of a network: its card's measured half-precision PSNR against the bar."""
    measured = getattr(cls.card, 'half_precision_db', None) or {}
    return {kind: measured.get(kind, 0.0) >= PRECISION_BAR_DB for kind in ('fp16', 'bf16')}
