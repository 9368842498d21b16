"""Networks. One file per network (``<name>_arch.py``); blocks shared by several live in ``layers.py``.

Every network class carries, as class attributes, what callers need to know about it:
``pad_multiple`` (height and width must be multiples of it), ``multi_output`` (whether ``forward``
returns a list, coarse/early first and final last) and ``official_param_key`` (the key of the state
dict inside the authors' released checkpoint files, ``None`` when there are none).
"""
import json
import os

MANIFEST_DIR = os.path.join(os.path.dirname(__file__), 'manifests')


def load_manifest(name):
    """The committed official checkpoint layout ``manifests/<name>.json`` (keys, shapes, param count)."""
    with open(os.path.join(MANIFEST_DIR, f'{name}.json'), encoding='utf-8') as f:
        return json.load(f)
