"""Distributed training through torchrun (or Slurm), and the few collectives the model needs.

basicsr 1.4.2's ``--launcher pytorch`` sets the device with ``RANK % cuda_count`` (a ``ZeroDivisionError`` on a
CPU machine, the wrong GPU on every node but the first) and always asks for NCCL, ignoring ``dist_params``.
:func:`init_dist` replaces basicsr's ``init_dist`` (see ``compat.apply_runner_fixes``):

* ``--launcher pytorch``: the environment torchrun sets (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
  ``MASTER_ADDR``/``MASTER_PORT``, also with ``--nnodes`` and a c10d rendezvous); the GPU is ``LOCAL_RANK``;
* ``--launcher slurm``: ``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID``, the master address from
  ``MASTER_ADDR`` or the first host of ``SLURM_NODELIST``, the port from ``dist_params.port``;
* the backend is ``dist_params.backend`` when given, else NCCL on GPUs and gloo on the CPU (``num_gpu: 0``
  or no GPU).
"""
import datetime
import os
import subprocess

import torch
import torch.distributed as dist

from basicsr_restore.core.errors import OptionError

#: ``dist_params`` and ``num_gpu`` of the option file being parsed (set by the parse_options wrapper)
PENDING = {}

_TORCHRUN_ENV = ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')


def uses_cuda(num_gpu):
    return torch.cuda.is_available() and num_gpu not in (0, '0')


def choose_backend(backend, cuda):
    if backend in (None, '', 'auto'):
        return 'nccl' if cuda else 'gloo'
    if backend not in ('nccl', 'gloo', 'mpi', 'ucc'):
        raise OptionError(f"dist_params.backend: {backend!r} is not a torch.distributed backend; use nccl (GPUs), gloo "
                          '(CPU) or leave it out (nccl on GPUs, gloo on the CPU).')
    if backend == 'nccl' and not cuda:
        raise OptionError('dist_params.backend: nccl needs CUDA GPUs, and this run uses the CPU (num_gpu: 0 or no GPU '
                          'visible). Set dist_params.backend: gloo, or leave it out (gloo on the CPU, nccl on GPUs).')
    return backend


def _select_gpu(local_rank, cuda):
    if not cuda:
        return
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise OptionError(f'local rank {local_rank} has no GPU: this node shows {count} GPU(s). Start at most {count} '
                          'processes per node (torchrun --nproc_per_node) or set CUDA_VISIBLE_DEVICES.')
    torch.cuda.set_device(local_rank)


def _init_torchrun(backend, cuda):
    missing = [k for k in _TORCHRUN_ENV if k not in os.environ]
    if missing:
        raise OptionError(f'--launcher pytorch expects the environment torchrun sets ({", ".join(missing)} missing). '
                          'Start the run with: torchrun --nproc_per_node=N -m basicsr.train -opt X.yml --launcher '
                          'pytorch (add --nnodes=M --rdzv-backend=c10d --rdzv-endpoint=HOST:PORT for several nodes).')
    _select_gpu(int(os.environ['LOCAL_RANK']), cuda)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))


def _slurm_master(node_list):
    try:
        out = subprocess.run(['scontrol', 'show', 'hostnames', node_list], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise OptionError(f'--launcher slurm: cannot find the master host of SLURM_NODELIST={node_list!r} '
                          f'({exc}); set MASTER_ADDR.') from None
    return out.stdout.split()[0]


def _init_slurm(backend, cuda, port):
    missing = [k for k in ('SLURM_PROCID', 'SLURM_NTASKS') if k not in os.environ]
    if missing:
        raise OptionError(f'--launcher slurm expects a Slurm job step ({", ".join(missing)} missing): start it '
                          'with srun.')
    rank, world = int(os.environ['SLURM_PROCID']), int(os.environ['SLURM_NTASKS'])
    count = torch.cuda.device_count() if cuda else 1
    local = int(os.environ.get('SLURM_LOCALID', rank % max(count, 1)))
    if 'MASTER_ADDR' not in os.environ:
        os.environ['MASTER_ADDR'] = _slurm_master(os.environ.get('SLURM_NODELIST', ''))
    os.environ['MASTER_PORT'] = str(port or os.environ.get('MASTER_PORT', 29500))
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(local))
    _select_gpu(local, cuda)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))


def init_dist(launcher, backend=None, **kwargs):
    """basicsr's ``init_dist(launcher, backend, **kwargs)``, with the device and backend rules above."""
    import torch.multiprocessing as mp
    if mp.get_start_method(allow_none=True) is None:
        mp.set_start_method('spawn')
    params = dict(PENDING.get('dist_params') or {})
    params.update({k: v for k, v in kwargs.items() if v is not None})
    if backend is not None:
        params['backend'] = backend
    cuda = uses_cuda(PENDING.get('num_gpu', 'auto'))
    chosen = choose_backend(params.get('backend'), cuda)
    if launcher == 'pytorch':
        _init_torchrun(chosen, cuda)
    elif launcher == 'slurm':
        _init_slurm(chosen, cuda, params.get('port'))
    else:
        raise OptionError(f'--launcher {launcher!r}: use none, pytorch (torchrun) or slurm.')


# ------------------------------------------------------------------------------------------- collectives
def active():
    return dist.is_available() and dist.is_initialized()


def rank_and_world():
    return (dist.get_rank(), dist.get_world_size()) if active() else (0, 1)


def sum_across_ranks(tensor):
    """``tensor`` summed over every rank (in place; a no-op without a process group)."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_objects(obj):
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` without a process group)."""
    if not active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
