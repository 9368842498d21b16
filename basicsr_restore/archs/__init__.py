"""Networks: one file per network (``<name>_arch.py``), blocks shared by several in ``layers.py``.

Every network class carries its card (``card``, see :mod:`basicsr_restore.archs.card`): size rule, official
presets with their parameter counts and manifests, checkpoint key, outputs, a tiny configuration. Network
modules are plain torch: they import neither basicsr nor the registration, which
:mod:`basicsr_restore.core.registry` does for every class with a card.
"""
