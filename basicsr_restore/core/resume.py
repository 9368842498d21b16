"""Exact resume: a run killed at any point and restarted with ``--auto_resume`` trains what it would have.

basicsr 1.4.2 saves the networks, optimizers and schedulers, but on resume its runner restarts the saved epoch
from its first batch (samples trained twice, every later batch late) and nothing restores the random state.
For runs of this package's models, the runner's data loading is replaced (see ``compat``):

* :class:`SeededSampler` is basicsr's ``EnlargedSampler`` (same order) that hands each sample a seed derived
  from ``(manual_seed, epoch, position in the epoch)``; :class:`SeededDataset` seeds python's ``random``,
  numpy and torch's CPU generator with it before reading the sample. Crops and flips are then a function of
  the sample's place in the run, not of which worker read it or when: 0 and 8 workers, a resumed run, and
  a DDP run against one process with the same global batch all see the same patches;
* the training state also records where the epoch stood (``SeededSampler.describe``) and every rank's RNG
  states; on resume the sampler skips the batches already trained and the RNGs are put back;
* :func:`load_resume_state` sweeps stale ``*.tmp<pid>`` files of interrupted saves and takes the newest
  training state that loads (with its network file), so one damaged file costs only the iterations since
  the state before it.
"""
import glob
import math
import os
import random
import re
import sys

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from basicsr_restore.core import distributed, safetensors_io

#: set by :func:`load_resume_state`: the ``progress`` entry of the state being resumed
_RESUMED = {}
#: the sampler of the current training run (one per process)
_ACTIVE = {}
_TMP = re.compile(r'\.tmp\d+$')


# ------------------------------------------------------------------------------------------------ sampling
def sample_seed(base, epoch, position):
    """A 32-bit seed for the sample at ``position`` (global, over all ranks) of ``epoch``."""
    return int(np.random.SeedSequence([int(base) % 2**63, int(epoch), int(position)]).generate_state(1)[0])


class SeededSampler(Sampler):
    """basicsr's ``EnlargedSampler`` order, yielding ``(index, seed)``; skips the batches trained before a resume.

    ``trained`` counts the batches of the current epoch that the model has trained (``batch_trained``), which is
    the data position a training state records."""

    def __init__(self, dataset, num_replicas, rank, ratio, seed, batch_size):
        self.dataset, self.num_replicas, self.rank = dataset, num_replicas, rank
        self.seed, self.batch_size = seed, batch_size
        self.num_samples = math.ceil(len(dataset) * ratio / num_replicas)
        self.total_size = self.num_samples * num_replicas
        self.epoch, self.trained = 0, 0
        self.resume_at = None  # (epoch, batches already trained in it)

    def set_epoch(self, epoch):
        self.epoch = epoch
        self.trained = self.skipped_batches()

    def batch_trained(self):
        self.trained += 1

    def skipped_batches(self):
        return self.resume_at[1] if self.resume_at and self.resume_at[0] == self.epoch else 0

    def permutation(self):
        g = torch.Generator()
        g.manual_seed(self.epoch)  # basicsr's EnlargedSampler: same order as an unmodified run
        n = len(self.dataset)
        return [v % n for v in torch.randperm(self.total_size, generator=g).tolist()]

    def __iter__(self):
        mine = self.permutation()[self.rank:self.total_size:self.num_replicas]
        start = self.skipped_batches() * self.batch_size
        for local in range(start, len(mine)):
            position = local * self.num_replicas + self.rank
            yield mine[local], sample_seed(self.seed, self.epoch, position)

    def __len__(self):
        return self.num_samples

    def describe(self):
        return {'epoch': self.epoch, 'batches': self.trained, 'batch_size': self.batch_size,
                'world_size': self.num_replicas, 'dataset_len': len(self.dataset), 'total_size': self.total_size}


class SeededDataset(Dataset):
    """Reads ``dataset[index]`` with python/numpy/torch-CPU random generators seeded by the sampler's seed.

    In the main process (no workers) the generators are put back afterwards, so the training step's own
    random state is not disturbed."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getattr__(self, name):
        if name == 'dataset' or name.startswith('__'):  # unpickling in a worker; protocols stay ours
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, item):
        index, seed = item
        in_worker = torch.utils.data.get_worker_info() is not None
        saved = None if in_worker else (random.getstate(), np.random.get_state(), torch.get_rng_state())
        random.seed(seed)
        np.random.seed(seed)
        torch.default_generator.manual_seed(seed)
        try:
            return self.dataset[index]
        finally:
            if saved is not None:
                random.setstate(saved[0])
                np.random.set_state(saved[1])
                torch.set_rng_state(saved[2])


def active_sampler():
    """The :class:`SeededSampler` of this process's training run, or None (basicsr's own loader)."""
    return _ACTIVE.get('sampler')


# ----------------------------------------------------------------------------------------------- loaders
def _apply_resume_position(sampler, logger):
    saved = _RESUMED.get('progress')
    if not saved:
        if _RESUMED.get('resumed'):
            logger.warning('This training state was written without the data position (an older version or '
                           "basicsr's own model): the resumed epoch starts from its first batch.")
        return
    now = sampler.describe()
    same = all(saved.get(k) == now[k] for k in ('batch_size', 'world_size', 'dataset_len', 'total_size'))
    if not same:
        logger.warning(f'Resuming with another data layout ({ {k: saved.get(k) for k in now if k in saved} } before, '
                       f'now batch_size {now["batch_size"]}, world_size {now["world_size"]}, '
                       f'{now["dataset_len"]} images): the resumed epoch starts from its first batch.')
        return
    sampler.resume_at = (int(saved['epoch']), int(saved['batches']))
    logger.info(f"Resuming inside epoch {saved['epoch']}: its first {saved['batches']} batches were trained "
                'already and are skipped.')


def seed_train_loader(loaders, opt, logger):
    """basicsr's ``create_train_val_dataloader`` result with its training loader rebuilt around the same dataset:
    seeded samples (:class:`SeededSampler`, :class:`SeededDataset`) and a resumable position; on a GPU its batches are
    pinned unless ``pin_memory`` says otherwise."""
    from basicsr.data import build_dataloader
    train_loader, _, val_loaders, total_epochs, total_iters = loaders
    dataset_opt = dict(opt['datasets']['train'])
    if 'pin_memory' not in dataset_opt and opt['num_gpu'] and torch.cuda.is_available():
        # integer batches copy to the GPU without blocking (RestorationModel.feed_data)
        dataset_opt['pin_memory'] = True
    train_set = train_loader.dataset
    sampler = SeededSampler(train_set, opt['world_size'], opt['rank'], dataset_opt.get('dataset_enlarge_ratio', 1),
                            opt['manual_seed'], train_loader.batch_size)
    loader = build_dataloader(SeededDataset(train_set), dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'],
                              sampler=sampler, seed=opt['manual_seed'])
    loader.generator = torch.Generator().manual_seed(int(opt['manual_seed']))  # iterators leave the global RNG be
    collate = getattr(train_set, 'batch_collate', lambda: None)()
    if collate is not None:  # the dataset's own (e.g. one shared storage per batch of integer pixels from the workers)
        loader.collate_fn = collate
    _apply_resume_position(sampler, logger)
    _ACTIVE['sampler'] = sampler
    return loader, sampler, val_loaders, total_epochs, total_iters


# -------------------------------------------------------------------------------------------- RNG states
def capture_rng():
    """This process's python, numpy, torch CPU and CUDA generator states, in weights-only-safe types."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {'python': random.getstate(),
             'numpy': {'kind': kind, 'keys': torch.from_numpy(keys.astype(np.int64)), 'pos': int(pos),
                       'has_gauss': int(has_gauss), 'gauss': float(gauss)},
             'torch': torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state):
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    n = state['numpy']
    np.random.set_state((n['kind'], n['keys'].cpu().numpy().astype(np.uint32), n['pos'], n['has_gauss'], n['gauss']))
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])


def gather_rng():
    """Every rank's :func:`capture_rng` (a collective under DDP)."""
    return distributed.gather_objects(capture_rng())


# --------------------------------------------------------------------------------------- choosing a state
def sweep_stale_temporaries(opt, logger=None):
    """Remove ``*.tmp<pid>`` files that interrupted saves left in ``models/`` and ``training_states/``."""
    removed = []
    if distributed.rank_and_world()[0] != 0:
        return removed
    for key in ('models', 'training_states'):
        folder = opt['path'].get(key)
        for path in glob.glob(os.path.join(folder, '*.tmp*')) if folder else []:
            if _TMP.search(path):
                os.remove(path)
                removed.append(path)
    if removed:
        message = f'Removed {len(removed)} file(s) left by interrupted saves: {", ".join(removed[:4])}'
        (logger.info if logger else print)(message)
    return removed


#: the extensions a network checkpoint of a run may have (``logger.save_format``: pth or safetensors)
SAFETENSORS = '.safetensors'


def _check_loadable(path):
    if path.endswith(SAFETENSORS):
        safetensors_io.read_header(path, 'network file')  # every tensor's bytes are in the file
    else:
        torch.load(path, map_location='cpu', weights_only=True, mmap=True)


def network_file(opt, basename, iteration):
    """``models/net_<basename>_<iteration>`` with the extension it was saved with: the one of ``logger.save_format``
    when that file exists, else the other one when it exists (the format changed during the run), else the one of
    ``logger.save_format``."""
    fmt = (opt.get('logger') or {}).get('save_format') or 'pth'
    exts = ['.pth', SAFETENSORS] if fmt == 'pth' else [SAFETENSORS, '.pth']
    paths = [os.path.join(opt['path']['models'], f'net_{basename}_{iteration}{ext}') for ext in exts]
    return next((p for p in paths if os.path.isfile(p)), paths[0])


def _network_files(opt, iteration):
    names = [k[len('network_'):] for k in opt if k.startswith('network_')]
    return [network_file(opt, n, iteration) for n in names]


def _resumed_network_paths(opt, iteration):
    """After basicsr's ``check_resume`` (which names ``net_<x>_<iter>.pth``): the file that was actually saved."""
    ignored = opt['path'].get('ignore_resume_networks') or []
    for key in [k for k in opt if k.startswith('network_')]:
        if key in ignored:
            continue
        option = f'pretrain_{key}'
        path = network_file(opt, key[len('network_'):], iteration)
        if opt['path'].get(option) != path:
            opt['path'][option] = path
            print(f'Set {option} to {path}')


def newest_loadable_state(opt, state_dir):
    """Path of the newest ``<iter>.state`` in ``state_dir`` that loads and whose network files load."""
    iters = sorted((int(f[:-len('.state')]) for f in os.listdir(state_dir)
                    if f.endswith('.state') and f[:-len('.state')].isdigit()), reverse=True)
    damaged = []
    for iteration in iters:
        path = os.path.join(state_dir, f'{iteration}.state')
        try:
            for file in [path] + _network_files(opt, iteration):
                if not os.path.isfile(file):
                    raise FileNotFoundError(f'{file} is missing')
                _check_loadable(file)
        except Exception as exc:  # truncated zip, bad pickle, missing network file
            damaged.append(f'{path} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ""})')
            continue
        for note in damaged:
            print(f'WARNING: training state {note} cannot be used; resuming from the one before it.', file=sys.stderr,
                  flush=True)
        return path
    if damaged:
        raise RuntimeError(f"--auto_resume: none of the training states in '{state_dir}' loads: "
                           + '; '.join(damaged[:5]) + '. Start the run again without --auto_resume, or set '
                           'path.resume_state to a good state.')
    return None


def load_resume_state(opt):
    """basicsr's ``load_resume_state``: CPU-safe, newest *loadable* state, data position kept for the sampler.

    With ``--auto_resume`` the newest loadable ``<iter>.state`` in ``path.training_states`` is used; otherwise
    ``path.resume_state`` if set. States are mapped to the GPU when the run uses one, else to the CPU."""
    from basicsr.utils import check_resume
    resume_path = None
    state_dir = opt['path'].get('training_states') or os.path.join('experiments', opt['name'], 'training_states')
    if opt.get('auto_resume'):
        if os.path.isdir(state_dir):
            sweep_stale_temporaries(opt)
            resume_path = newest_loadable_state(opt, state_dir)
            if resume_path:
                opt['path']['resume_state'] = resume_path
    else:
        resume_path = opt['path'].get('resume_state')
        if resume_path is not None:
            if not os.path.isfile(resume_path):
                raise FileNotFoundError(f"path.resume_state: '{resume_path}' does not exist. Point the option at a "
                                        '<iter>.state file in the training_states folder of the run, or use '
                                        '--auto_resume.')
            sweep_stale_temporaries(opt)
    if resume_path is None:
        return None
    if opt.get('num_gpu', 0) != 0 and torch.cuda.is_available():
        device = torch.device('cuda', torch.cuda.current_device())
    else:
        device = torch.device('cpu')
    state = torch.load(resume_path, map_location=device, weights_only=True)
    _RESUMED.clear()
    _RESUMED.update(resumed=True, progress=state.get('progress'))
    check_resume(opt, state['iter'])
    _resumed_network_paths(opt, state['iter'])
    return state
