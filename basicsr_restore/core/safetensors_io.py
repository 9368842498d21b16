"""``.safetensors`` weights files: read by :func:`basicsr_restore.core.checkpoints.read_checkpoint` (so by every tool
that reads weights), written by the model (``logger.save_format: safetensors``) and ``convert --to safetensors``.

A safetensors file is an 8-byte little-endian header length, a JSON header (``{name: {dtype, shape,
data_offsets}}``, plus ``__metadata__``: string -> string) and the raw tensor bytes. Nothing in it is executed when
it is read (no pickle), so it needs no ``--trusted``/``path.weights_only_g: false``. A file is recognised by its
content (the header's opening ``{`` right after the length), whatever its extension.

Layout of the files written here (and read back into the same dict a ``.pth`` file gives, so the one key rule of
``checkpoints.detect_key`` applies):

* tensors named ``params.<key>`` / ``params_ema.<key>`` -> ``{'params': {...}, 'params_ema': {...}}``;
* any other names -> a bare state dict (e.g. the Hugging Face files of other projects);
* ``__metadata__['network_g']``: the network record (``{'type': ..., arguments}``) as JSON.

The header is checked before the library reads the data: a truncated file, offsets beyond the file, overlapping or
with gaps between them, a size that is not what dtype and shape need, or a header that is not JSON are one error
naming the file and what is wrong.
"""
import json
import math
import os

from basicsr_restore.core.imageio import atomic_path
from basicsr_restore.core.state_dicts import CheckpointError, check_finite, is_state_dict

#: bytes per element of every safetensors dtype torch can hold
DTYPE_BYTES = {'F64': 8, 'F32': 4, 'F16': 2, 'BF16': 2, 'I64': 8, 'I32': 4, 'I16': 2, 'I8': 1, 'U8': 1, 'BOOL': 1,
               'U64': 8, 'U32': 4, 'U16': 2, 'C64': 8, 'F8_E4M3': 1, 'F8_E4M3FNUZ': 1, 'F8_E5M2': 1,
               'F8_E5M2FNUZ': 1, 'F8_E8M0': 1}
#: the entries of a BasicSR checkpoint stored as ``<entry>.<tensor name>``
GROUPS = ('params', 'params_ema')
#: the metadata entry holding the network record (``checkpoints.NETWORK_KEY``)
RECORD = 'network_g'
EXTENSION = '.safetensors'
#: the largest header the safetensors library accepts
MAX_HEADER = 100_000_000


def library():
    """``safetensors.torch``, or one error saying how to install it."""
    try:
        import safetensors.torch
    except ImportError:
        raise CheckpointError('reading or writing .safetensors files needs the safetensors package: '
                     'pip install safetensors') from None
    return safetensors.torch


def is_safetensors(path):
    """Whether ``path`` is (or claims to be, by its extension) a safetensors file: its 9th byte opens the JSON
    header. A torch zip checkpoint has a zip field there, a legacy one a pickle opcode's argument."""
    if str(path).lower().endswith(EXTENSION):
        return True
    try:
        with open(path, 'rb') as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b'{' and int.from_bytes(head[:8], 'little') <= MAX_HEADER


def read_header(path, what='weights'):
    """``(entries, metadata, data_start)`` of the safetensors file ``path``, every entry checked against the file.

    ``entries`` maps tensor names to their header entry, in the order of their data; one error naming the file
    and the problem for anything the data would not match."""
    where = f"{what} '{path}'"
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f'{where} is truncated: {size} bytes, less than the 8-byte header length of a '
                                  'safetensors file.')
        length = int.from_bytes(head, 'little')
        if length > MAX_HEADER:
            raise CheckpointError(f'{where} is not a readable safetensors file: its header length field says '
                                  f'{length:,} bytes (at most {MAX_HEADER:,}).')
        if length > size - 8:
            raise CheckpointError(f'{where} is truncated: its header needs {length:,} bytes, the file has '
                                  f'{size - 8:,} after the length field.')
        raw = f.read(length)
    try:
        header = json.loads(raw.decode('utf-8'))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f'{where} is not a readable safetensors file: its header is not JSON ({exc}).') from None
    if not isinstance(header, dict):
        raise CheckpointError(f'{where} is not a readable safetensors file: its header is a JSON '
                              f'{type(header).__name__}, not an object.')
    metadata = header.pop('__metadata__', None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f'{where}: its __metadata__ must map names to strings.')
    data_start, data_size = 8 + length, size - 8 - length
    spans = []
    for name, entry in header.items():
        spans.append(_check_entry(where, name, entry, data_size))
    spans.sort()
    position, previous = 0, None
    for begin, end, name in spans:
        if begin < position:
            raise CheckpointError(f"{where}: its header lies: tensors '{previous}' and '{name}' overlap (bytes "
                                  f'{begin:,} to {position:,} of the data).')
        if begin > position:
            raise CheckpointError(f'{where}: its header lies: bytes {position:,} to {begin:,} of the data, before '
                                  f"tensor '{name}', belong to no tensor.")
        position, previous = end, name
    if position != data_size:
        raise CheckpointError(f'{where}: its header lies: the tensors end at byte {position:,} of the data, the file '
                              f'holds {data_size:,} (extra bytes after the last tensor).')
    return {name: header[name] for _, _, name in spans}, metadata, data_start


def _check_entry(where, name, entry, data_size):
    """``(begin, end, name)`` of one header entry, checked: known dtype, a shape, offsets whose size fits both."""
    if not isinstance(entry, dict) or not {'dtype', 'shape', 'data_offsets'} <= set(entry):
        raise CheckpointError(f"{where}: header entry '{name}' is not a tensor (it needs dtype, shape and "
                              'data_offsets).')
    dtype, shape, offsets = entry['dtype'], entry['shape'], entry['data_offsets']
    if dtype not in DTYPE_BYTES:
        raise CheckpointError(f"{where}: tensor '{name}' has the dtype {dtype!r}, not one of {', '.join(DTYPE_BYTES)}.")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise CheckpointError(f"{where}: tensor '{name}' has the shape {shape!r}, not a list of sizes.")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise CheckpointError(f"{where}: tensor '{name}' has the data_offsets {offsets!r}, not [begin, end] with "
                     '0 <= begin <= end.')
    begin, end = offsets
    need = math.prod(shape) * DTYPE_BYTES[dtype]
    if end - begin != need:
        raise CheckpointError(f"{where}: its header lies: tensor '{name}' ({dtype}, shape {shape}) needs {need:,} "
                              f'bytes, its offsets [{begin}, {end}] give {end - begin:,}.')
    if end > data_size:
        raise CheckpointError(f"{where} is truncated or its header lies: tensor '{name}' ends at byte {end:,} of the "
                              f'data, the file holds {data_size:,}.')
    return begin, end, name


def read(path, what='weights'):
    """The checkpoint dict of ``path``: ``{'params': ..., 'params_ema': ..., 'network_g': record}`` for a file in
    this package's layout, else the bare state dict (plus ``network_g`` when the metadata records it)."""
    entries, metadata, _ = read_header(path, what)
    where = f"{what} '{path}'"
    st = library()
    try:
        tensors = st.load_file(str(path), device='cpu')
    except Exception as exc:  # anything the checks above let through (a dtype this torch lacks, a changed file)
        text = str(exc).strip().splitlines()
        raise CheckpointError(f'{where} is not a readable safetensors file ({type(exc).__name__}: '
                     f'{text[0] if text else "no message"}).') from None
    tensors = {name: tensors[name] for name in entries if name in tensors}
    grouped = bool(tensors) and all(name.split('.', 1)[0] in GROUPS and '.' in name for name in tensors)
    if grouped:
        checkpoint = {}
        for name, value in tensors.items():
            group, key = name.split('.', 1)
            checkpoint.setdefault(group, {})[key] = value
    else:
        checkpoint = dict(tensors)
    if RECORD in metadata:
        try:
            record = json.loads(metadata[RECORD])
        except ValueError as exc:
            raise CheckpointError(f"{where}: its metadata '{RECORD}' is not JSON ({exc}).") from None
        if isinstance(record, dict):
            checkpoint[RECORD] = record
    return checkpoint


def tensors_of(payload, where='weights'):
    """``(tensors, metadata)`` to write for ``payload``: a checkpoint dict (``params``/``params_ema`` state dicts and
    the ``network_g`` record) or a bare state dict. Refuses weights with NaN/Inf and entries it cannot store."""
    import torch

    metadata = {'format': 'pt'}
    if is_state_dict(payload):
        check_finite(payload, where)
        groups = {None: payload}
    else:
        groups = {}
        for key, value in payload.items():
            if key == RECORD:
                if value is not None:
                    metadata[RECORD] = json.dumps(value)
            elif key in GROUPS and is_state_dict(value):
                check_finite(value, f'{where} ({key})')
                groups[key] = value
            else:
                raise CheckpointError(f'{where}: cannot store the entry {key!r} ({type(value).__name__}) in a '
                                      f"safetensors file (it holds {', '.join(GROUPS)} state dicts and the {RECORD} "
                                      'record).')
        if not groups:
            raise CheckpointError(f'{where}: nothing to write (no {" or ".join(GROUPS)} state dict).')
    tensors = {}
    for group, state in groups.items():
        for key, value in state.items():
            # own, contiguous CPU copies: the library refuses tensors that share memory (params_ema aliasing params)
            tensors[key if group is None else f'{group}.{key}'] = value.detach().to('cpu', copy=True).contiguous()
    assert all(torch.is_tensor(v) for v in tensors.values())
    return tensors, metadata


def dump(payload, path, where='weights'):
    """Write ``payload`` (see :func:`tensors_of`) to ``path`` as safetensors (not atomic: see :func:`write`)."""
    tensors, metadata = tensors_of(payload, where)
    library().save_file(tensors, str(path), metadata=metadata)


def write(payload, path, where='weights'):
    """:func:`dump` through a temporary file renamed over ``path`` once complete (never a torn file)."""
    tensors, metadata = tensors_of(payload, where)  # refuse bad weights before anything is created
    st = library()
    with atomic_path(path) as tmp:
        st.save_file(tensors, tmp, metadata=metadata)
