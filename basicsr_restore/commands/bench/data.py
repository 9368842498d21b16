"""``basicsr-restore bench --data``: how fast a recipe's training DataLoader delivers samples.

For the ``datasets.train`` block of an option file, built as training builds it:

* **in process**: samples per second of ``dataset[i]`` in this process, and the share of a sample's time spent
  reading, decoding and converting pixels to float (this package's datasets: ``_read`` and ``_to_float``; the rest is
  cutting, flipping and packing into C x H x W RGB tensors) -- what one worker can give at best;
* **DataLoader**: samples per second with ``--workers`` processes (shuffled, persistent, prefetch 4, pinned on a GPU),
  per worker, and the bytes of one batch that travel to the device (integer batches: a quarter of float32's for
  8-bit data).
"""
import time

from basicsr_restore.core.option_files import read_option_file
from basicsr_restore.host.option_checks import float_batches_for
from basicsr_restore.host.runner_helpers import plugin_model

#: the dataset methods whose time is the "decode share": reading + decoding the stored values, converting the pixels
#: to float (in the dataset only without ``integer_batches``; else on the device)
TIMED = ('_read', '_to_float')


def load_train_dataset(opt_path):
    """``(dataset, batch size, option file's train dataset block)`` of an option file's ``datasets.train``."""
    from basicsr.data import build_dataset  # basicsr_restore (imported first) registers its datasets there
    opt = read_option_file(opt_path, what='--data -opt')
    block = (opt.get('datasets') or {}).get('train')
    if not isinstance(block, dict):
        raise ValueError(f"'{opt_path}' has no datasets.train block: give a training option file.")
    if not plugin_model(opt):
        float_batches_for(opt)  # what a model that is not this package's gets
    block = dict(block, phase='train', scale=opt.get('scale', 1))
    return build_dataset(block), int(block.get('batch_size_per_gpu', 1)), block


def time_samples(dataset, count):
    """Per-sample milliseconds in this process and the share of :data:`TIMED` (for datasets that have them), over
    ``count`` samples read once before (as a persistent worker reads them from its second epoch on)."""
    spent = [0.0]
    timed = [name for name in TIMED if hasattr(dataset, name)]

    def timing(original):
        def run(*a, **k):
            start = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                spent[0] += time.perf_counter() - start
        return run

    for i in range(count):  # warm-up over the same samples: files and LMDBs opened, their pages mapped (steady state)
        dataset[i % len(dataset)]
    for name in timed:
        setattr(dataset, name, timing(getattr(dataset, name)))
    start = time.perf_counter()
    try:
        for i in range(count):
            dataset[i % len(dataset)]
    finally:
        for name in timed:
            delattr(dataset, name)
    total = time.perf_counter() - start
    share = 100.0 * spent[0] / total if timed else None
    return {'samples': count, 'ms_per_sample': 1000.0 * total / count, 'samples_per_s': count / total,
            'decode_share_pct': share, 'augment_share_pct': None if share is None else 100.0 - share}


def batch_bytes(batch):
    """Bytes of the tensors of a batch that go to the device (``lq`` and ``gt``)."""
    return sum(batch[k].nelement() * batch[k].element_size() for k in ('lq', 'gt') if k in batch)


def measure_data(opt_path, workers, batches, device):
    """Throughput of the training DataLoader of ``opt_path`` as training builds it (shuffled, ``workers`` worker
    processes, persistent, pinned memory on a GPU, prefetch 4), after one epoch-start warm-up of 2 batches."""
    from torch.utils.data import DataLoader
    dataset, batch, block = load_train_dataset(opt_path)
    if len(dataset) < batch:
        raise ValueError(f"'{opt_path}': the training set has {len(dataset)} samples, fewer than one batch ({batch}).")
    record = {'options': opt_path, 'dataset': block.get('type'), 'samples_in_set': len(dataset), 'batch': batch,
              'workers': workers, 'in_process': time_samples(dataset, min(len(dataset), max(4 * batch, 256)))}
    fmt = getattr(dataset, '_formats', None)  # known once a sample was read
    record['value_format'] = '/'.join(sorted(set(fmt.values()))) if fmt else 'files'
    collate = getattr(dataset, 'batch_collate', lambda: None)()  # as the training loader (resume.seed_train_loader)
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                        pin_memory=device.type == 'cuda', persistent_workers=workers > 0,
                        prefetch_factor=4 if workers else None, collate_fn=collate)
    iterator = iter(loader)
    first = None
    for _ in range(min(2, len(loader) - 1)):
        first = next(iterator)
    done, start = 0, time.perf_counter()
    while done < batches:
        try:
            item = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            continue
        first = first or item
        done += 1
    seconds = time.perf_counter() - start
    rate = done * batch / seconds
    record.update(batches=done, samples_per_s=rate, samples_per_s_per_worker=rate / max(workers, 1),
                  batches_per_s=done / seconds, bytes_per_batch=batch_bytes(first),
                  batch_dtype=str(first['gt'].dtype).replace('torch.', ''))
    return record


def fmt(value, spec, none='n/a'):
    """``value`` formatted, or ``none`` for None (the bench tables)."""
    return none if value is None else format(value, spec)


def format_data(records):
    lines = ['| option file | dataset | values | batch | workers | samples/s | per worker | in-process samples/s '
             '| decode share | bytes/batch to device |',
             '|---|---|---|---:|---:|---:|---:|---:|---:|---:|']
    for r in records:
        if r.get('error'):
            lines.append(f"| {r['options']} | error: {r['error'][:100]} | | | | | | | | |")
            continue
        ip = r['in_process']
        lines.append(f"| {r['options']} | {r['dataset']} | {r.get('value_format')} | {r['batch']} | {r['workers']} | "
                     f"{r['samples_per_s']:.1f} | {r['samples_per_s_per_worker']:.1f} | {ip['samples_per_s']:.1f} | "
                     f"{fmt(ip['decode_share_pct'], '.0f')} % | {r['bytes_per_batch'] / 2**20:.2f} MiB "
                     f"({r['batch_dtype']}) |")
    return '\n'.join(lines)
