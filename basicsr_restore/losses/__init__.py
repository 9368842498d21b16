"""Losses: plain torch modules ``<name>_loss.py``; :mod:`basicsr_restore.core.registry` puts every ``*Loss`` class
they define into basicsr's LOSS_REGISTRY.

A loss whose class sets ``needs_lq = True`` is called as ``loss(pred, target, lq)`` by
:class:`basicsr_restore.models.restoration_model.RestorationModel` (e.g. contrastive losses that use the
degraded input as a negative); every other loss is called as ``loss(pred, target)``.
"""
