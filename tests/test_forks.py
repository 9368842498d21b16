"""Option files of the BasicSR forks (NAFNet, HINet, DRCNet, Restormer) run as written: their names and keys mean
what they mean in the fork. The option files here are written for these tests from the forks' documented keys."""
import math
import random
import re

import pytest
import torch
import yaml
from basicsr.utils.registry import DATASET_REGISTRY, MODEL_REGISTRY
from conftest import run

import basicsr_restore  # noqa: F401
from basicsr_restore.archs.mirnet_arch import MIRNet
from basicsr_restore.core.inference import grid_average, grid_starts
from basicsr_restore.models import fork_recipe
from basicsr_restore.models.lr_scheduler import CosineAnnealingRestartCyclicLR, TrueCosineAnnealingLR


def lrs(scheduler_cls, steps, lr=1.0, **kwargs):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = scheduler_cls(opt, **kwargs)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]['lr'])
        opt.step()
        sched.step()
    return out


def test_true_cosine_annealing_is_one_cosine_over_t_max():
    got = lrs(TrueCosineAnnealingLR, 11, lr=2e-3, T_max=10, eta_min=1e-6)
    want = [1e-6 + (2e-3 - 1e-6) * 0.5 * (1 + math.cos(math.pi * t / 10)) for t in range(11)]
    assert got == pytest.approx(want, rel=1e-9, abs=1e-15)


def test_cyclic_restarts_follow_their_weights_and_minima():
    got = lrs(CosineAnnealingRestartCyclicLR, 10, lr=1.0, periods=[4, 6], restart_weights=[1, 0.5],
              eta_mins=[0.1, 0.01])

    def want(t):
        k, start = (0, 0) if t <= 4 else (1, 4)
        period, weight, eta = ((4, 1.0, 0.1), (6, 0.5, 0.01))[k]
        return eta + weight * 0.5 * (1 - eta) * (1 + math.cos(math.pi * (t - start) / period))
    assert got == pytest.approx([want(t) for t in range(10)], rel=1e-12)
    assert got[4] == pytest.approx(0.1)  # the step that ends a cycle belongs to it
    assert got[5] == pytest.approx(0.01 + 0.5 * 0.99 * 0.5 * (1 + math.cos(math.pi / 6)))
    with pytest.raises(ValueError, match='one length'):
        lrs(CosineAnnealingRestartCyclicLR, 1, periods=[4, 6], restart_weights=[1], eta_mins=[0, 0])


def test_gradient_clipping_follows_each_forks_default():
    assert MODEL_REGISTRY.get('ImageRestorationModel').GRAD_CLIP_BY_DEFAULT is True
    assert MODEL_REGISTRY.get('ImageCleanModel').GRAD_CLIP_BY_DEFAULT is False
    assert fork_recipe.grad_clip({}, by_default=True) == 0.01
    assert fork_recipe.grad_clip({'use_grad_clip': False}, by_default=True) is None
    assert fork_recipe.grad_clip({}, by_default=False) is None
    assert fork_recipe.grad_clip({'use_grad_clip': True}, by_default=False) == 0.01
    assert fork_recipe.grad_clip({'grad_clip': 0.5, 'use_grad_clip': True}, by_default=False) == 0.5
    with pytest.raises(ValueError, match='contradict'):
        fork_recipe.grad_clip({'grad_clip': 0.5, 'use_grad_clip': False}, by_default=True)


def test_progressive_batches_and_patches_per_iteration():
    opt = {'datasets': {'train': {'mini_batch_sizes': [4, 2, 1], 'iters': [2, 2, 2], 'gt_sizes': [16, 24, 32],
                                  'batch_size_per_gpu': 4, 'gt_size': 32}}}
    stages = fork_recipe.Progressive.from_options(opt)
    lq = torch.arange(4 * 3 * 32 * 32, dtype=torch.float32).reshape(4, 3, 32, 32)
    random.seed(0)
    seen = []
    for it in range(1, 8):
        small_lq, small_gt = stages(it, lq, lq + 0.5)
        seen.append(tuple(small_lq.shape))
        assert torch.equal(small_gt, small_lq + 0.5)  # the same samples and the same window
        top, left = divmod(int(small_lq[0, 0, 0, 0].item()) % (32 * 32), 32)
        sample = int(small_lq[0, 0, 0, 0].item()) // (3 * 32 * 32)
        assert torch.equal(small_lq[0], lq[sample, :, top:top + small_lq.shape[-2], left:left + small_lq.shape[-1]])
    assert seen == [(4, 3, 16, 16)] * 2 + [(2, 3, 24, 24)] * 2 + [(1, 3, 32, 32)] * 3
    with pytest.raises(ValueError, match='must not exceed'):
        fork_recipe.Progressive([8], [10], [32], loaded_batch=4, loaded_patch=32)


def test_mixup_mixes_input_and_target_with_one_weight_and_one_permutation():
    gt, lq = torch.rand(6, 3, 8, 8), torch.rand(6, 3, 8, 8)
    torch.manual_seed(5)
    mixed_gt, mixed_lq = fork_recipe.Mixup(beta=1.2)(gt, lq)
    torch.manual_seed(5)
    lam = float(torch.distributions.Beta(1.2, 1.2).sample())
    perm = torch.randperm(6)
    assert torch.allclose(mixed_gt, lam * gt + (1 - lam) * gt[perm])
    assert torch.allclose(mixed_lq, lam * lq + (1 - lam) * lq[perm])
    assert fork_recipe.Mixup.from_options({'mixing_augs': {'mixup': False}}) is None
    with pytest.raises(ValueError, match='cutmix'):
        fork_recipe.Mixup.from_options({'mixing_augs': {'mixup': True, 'cutmix': True}})


def test_grid_validation_places_crops_as_the_forks_and_averages_them():
    assert grid_starts(720, 256) == [0, 232, 464] and grid_starts(256, 256) == [0] and grid_starts(100, 256) == [0]
    assert grid_starts(1280, 256) == [0, 256, 512, 768, 1024]
    x = torch.rand(1, 3, 70, 90)
    calls = []

    def forward(t):
        calls.append(t.shape[0])
        return t * 2 + 1
    out = grid_average(forward, x, 32, max_minibatch=4)
    assert torch.allclose(out, x * 2 + 1) and sum(calls) == 3 * 3 and max(calls) == 4
    # overlapping crops are averaged: a forward that adds its crop's own mean shows it
    mean_of = grid_average(lambda t: t.mean(dim=(1, 2, 3), keepdim=True).expand_as(t), x, 64)
    corner = x[:, :, :64, :64].mean()
    assert torch.allclose(mean_of[0, 0, 0, 0], corner)


def test_fork_dataset_names_read_pairs(small_pairs):
    for name in ('PairedImageDataset_SIDD', 'Dataset_PairedImage'):
        ds = DATASET_REGISTRY.get(name)({'name': 'f', 'phase': 'train', 'gt_size': 32, 'use_flip': True,
                                         'use_rot': True, 'dataroot_gt': str(small_pairs / 'train' / 'gt.lmdb'),
                                         'dataroot_lq': str(small_pairs / 'train' / 'lq.lmdb'),
                                         'io_backend': {'type': 'lmdb'}})
        assert ds[0]['gt'].shape == (3, 32, 32) and ds.hflip and ds.rot


# ------------------------------------------------------------------------------- stock runner, fork files
def nafnet_style(data):
    """A GoPro training file in NAFNet's/HINet's/DRCNet's format (their keys and values), tiny network."""
    return {
        'name': 'fork-nafnet', 'model_type': 'ImageRestorationModel', 'scale': 1, 'num_gpu': 0, 'manual_seed': 10,
        'datasets': {
            'train': {'name': 'gopro-train', 'type': 'PairedImageDataset',
                      'dataroot_gt': str(data / 'train' / 'gt.lmdb'), 'dataroot_lq': str(data / 'train' / 'lq.lmdb'),
                      'filename_tmpl': '{}', 'io_backend': {'type': 'lmdb'},
                      'gt_size': 32, 'use_flip': True, 'use_rot': True, 'use_shuffle': True,
                      'num_worker_per_gpu': 0, 'batch_size_per_gpu': 2, 'dataset_enlarge_ratio': 1,
                      'prefetch_mode': None},
            'val': {'name': 'gopro-test', 'type': 'PairedImageDataset_SIDD', 'dataroot_gt': str(data / 'val' / 'gt'),
                    'dataroot_lq': str(data / 'val' / 'lq'), 'io_backend': {'type': 'disk'}}},
        'network_g': {'type': 'MIRNet', **MIRNet.card.tiny},  # the one change a migrating user makes
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'optim_g': {'type': 'AdamW', 'lr': 1e-3, 'weight_decay': 0.0, 'betas': [0.9, 0.9]},
                  'scheduler': {'type': 'TrueCosineAnnealingLR', 'T_max': 4, 'eta_min': 1e-7},
                  'total_iter': 2, 'warmup_iter': -1,
                  'pixel_opt': {'type': 'PSNRLoss', 'loss_weight': 1, 'reduction': 'mean'}},
        'val': {'val_freq': 2, 'save_img': False, 'grids': True, 'crop_size': 32, 'max_minibatch': 8,
                'use_image': False, 'rgb2bgr': True,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False}}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 1000, 'use_tb_logger': False,
                   'wandb': {'project': None, 'resume_id': None}},
        'dist_params': {'backend': 'nccl', 'port': 29500},
    }


def restormer_style(data):
    """A deblurring training file in Restormer's format: progressive training, mixup, cyclic restarts."""
    opt = nafnet_style(data)
    opt.update(name='fork-restormer', model_type='ImageCleanModel')
    opt['datasets']['train'].update(type='Dataset_PairedImage', geometric_augs=True, gt_size=32,
                                    batch_size_per_gpu=4, mini_batch_sizes=[4, 2], iters=[2, 2], gt_sizes=[16, 32])
    del opt['datasets']['train']['use_flip'], opt['datasets']['train']['use_rot']
    opt['datasets']['val']['type'] = 'Dataset_PairedImage'
    opt['train'].update(total_iter=4, use_grad_clip=True,
                        mixing_augs={'mixup': True, 'mixup_beta': 1.2, 'use_identity': True},
                        scheduler={'type': 'CosineAnnealingRestartCyclicLR', 'periods': [2, 2],
                                   'restart_weights': [1, 1], 'eta_mins': [3e-4, 1e-6]},
                        pixel_opt={'type': 'L1Loss', 'loss_weight': 1, 'reduction': 'mean'})
    opt['val'] = {'window_size': 8, 'val_freq': 4, 'save_img': False, 'rgb2bgr': True, 'use_image': False,
                  'max_minibatch': 8, 'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0,
                                                           'test_y_channel': False}}}
    return opt


def logged_lrs(text):
    return {int(i): float(lr) for i, lr in re.findall(r'iter:\s+(\d+), lr:\(([\d.e+-]+),?\)', text)}


def trained_steps(folder):
    """``{iteration: 'lr:(...)] ... losses'}`` of a run's log, without the timings."""
    text = '\n'.join(p.read_text() for p in folder.glob('*.log'))
    return {int(i): (lr, losses.strip()) for i, lr, losses in
            re.findall(r'iter:\s+(\d+), lr:\(([^)]*)\)\] \[eta[^\]]*\] (.*)', text)}


def drcnet_style(data):
    """DRCNet's authors' format: NAFNet's, with Intra-CR and no vgg_weights (VGG19 from torch hub's cache)."""
    opt = nafnet_style(data)
    opt['name'] = 'fork-drcnet'
    opt['train']['pixel_opt'] = {'type': 'IntraCRLoss', 'loss_weight': 0.5, 'reduction': 'mean'}
    return opt


@pytest.mark.parametrize('style', ['nafnet', 'drcnet', 'restormer'])
def test_fork_training_file_runs_through_the_stock_runner_with_the_forks_numbers(style, small_pairs, tmp_path):
    opt = {'nafnet': nafnet_style, 'drcnet': drcnet_style, 'restormer': restormer_style}[style](small_pairs)
    path = tmp_path / 'fork.yml'
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    env = {}
    if style == 'drcnet':
        from basicsr_restore.losses.intra_cr_loss import vgg19_features
        hub = tmp_path / 'torch' / 'hub' / 'checkpoints'
        hub.mkdir(parents=True)
        torch.save({f'features.{k}': v for k, v in vgg19_features(37).state_dict().items()},
                   hub / 'vgg19-dcbb9e9d.pth')
        env = {'TORCH_HOME': str(tmp_path / 'torch')}
    run(['python', '-m', 'basicsr.train', '-opt', str(path)], cwd=tmp_path, env=env)
    text = '\n'.join(p.read_text() for p in (tmp_path / 'experiments' / opt['name']).glob('*.log'))
    assert 'Gradient clipping: max-norm 0.01.' in text
    assert re.search(r'Validation gopro-test\s+# psnr: \d+\.\d+', text)
    lr = logged_lrs(text)
    # basicsr steps the schedule before every iteration but the first: iteration i trains at step i - 1
    if style != 'restormer':  # torch's CosineAnnealingLR over T_max=4
        want = {i: 1e-7 + (1e-3 - 1e-7) * 0.5 * (1 + math.cos(math.pi * (i - 1) / 4)) for i in (1, 2)}
        assert 'Validating gopro-test in 32-pixel grid crops (val.grids)' in text
    else:  # two cycles of 2 steps
        def cyclic(t):
            k, start = (0, 0) if t <= 2 else (1, 2)
            eta = (3e-4, 1e-6)[k]
            return eta + 0.5 * (1e-3 - eta) * (1 + math.cos(math.pi * (t - start) / 2))
        want = {i: cyclic(i - 1) for i in (1, 2, 3, 4)}
        assert 'Progressive training: batch [4, 2], patch [16, 32] until iterations [2, 4].' in text
    assert set(want) <= set(lr) and all(lr[i] == pytest.approx(want[i], rel=1e-3) for i in want), lr
    if style == 'drcnet':
        assert re.search(r'IntraCRLoss: VGG19 weights from .*torch/hub/checkpoints/vgg19-dcbb9e9d.pth', text)
    if style == 'nafnet':
        # `migrate` writes the native file; it trains the same numbers (learning rates and losses, every iteration)
        native = tmp_path / 'native'
        native.mkdir()
        run(['basicsr-restore', 'migrate', str(path), '-o', str(native / 'native.yml')], cwd=tmp_path)
        migrated = yaml.safe_load((native / 'native.yml').read_text())
        assert migrated['model_type'] == 'RestorationModel' and migrated['train']['use_grad_clip'] is True
        run(['python', '-m', 'basicsr.train', '-opt', str(native / 'native.yml')], cwd=native)
        fork_steps = trained_steps(tmp_path / 'experiments' / opt['name'])
        assert len(fork_steps) == 2 and trained_steps(native / 'experiments' / opt['name']) == fork_steps


def test_migrate_translates_every_fork_key_and_says_so(small_pairs, tmp_path, capsys):
    from conftest import cli

    from basicsr_restore.commands.migrate import migrate
    fork = restormer_style(small_pairs)
    fork['datasets']['train']['use_shuffle'] = True
    (tmp_path / 'fork.yml').write_text(yaml.safe_dump(fork, sort_keys=False))
    rc, out, err = cli(capsys, 'migrate', tmp_path / 'fork.yml')
    assert rc == 0, err
    native = yaml.safe_load(out)
    expected = migrate(yaml.safe_load((tmp_path / 'fork.yml').read_text())).opt
    assert native == expected  # the comments aside, the printed file is the migrated options
    assert native['model_type'] == 'RestorationModel' and 'use_grad_clip' in native['train']  # Restormer's, kept
    assert native['datasets']['train']['type'] == native['datasets']['val']['type'] == 'PairedRestorationDataset'
    assert 'use_shuffle' not in native['datasets']['train'] and native['val']['metric_input'] == 'float'
    assert 'rgb2bgr' not in native['val'] and native['val']['window_size'] == 8
    assert native['train']['scheduler'] == fork['train']['scheduler']  # read under its own name
    lines = out.splitlines()
    for key in ('model_type: RestorationModel', '    type: PairedRestorationDataset', '  metric_input: float', 'val:',
                '  train:'):
        above = [lines[i - 1] for i, line in enumerate(lines) if line == key]
        assert above and all('# migrate:' in a for a in above), key
    assert 'translated key(s)' in lines[0]
    nafnet = nafnet_style(small_pairs)
    m = migrate(nafnet)
    assert m.opt['datasets']['train']['use_hflip'] is True and 'use_flip' not in m.opt['datasets']['train']
    assert m.opt['train']['use_grad_clip'] is True  # ImageRestorationModel clipped by default
    (tmp_path / 'bad.yml').write_text(yaml.safe_dump({**fork, 'val': {'rgb2bgr': False}}))
    rc, _, err = cli(capsys, 'migrate', tmp_path / 'bad.yml')
    assert rc == 2 and 'val.rgb2bgr: false cannot be migrated' in err


def test_fork_keys_that_cannot_be_honoured_are_named():
    import types

    from basicsr_restore.core.errors import OptionError
    from basicsr_restore.host.option_checks import adopt_fork_keys
    from basicsr_restore.models.restoration_model import RestorationModel

    def validation(**val):
        return RestorationModel._validation_options(types.SimpleNamespace(opt={'val': val}))
    assert validation(use_image=False)[0] == 'float' and validation(use_image=True)[0] == 'uint8'
    for bad, words in (({'use_image': True, 'metric_input': 'float'}, 'contradict'),
                       ({'rgb2bgr': False}, 'rgb2bgr: false'), ({'grids': True}, 'needs val.crop_size')):
        with pytest.raises(ValueError, match=words):
            validation(**bad)
    opt = {'datasets': {'train': {'type': 'PairedImageDataset', 'use_flip': True, 'use_rot': False}}}
    adopt_fork_keys(opt)
    assert opt['datasets']['train'] == {'type': 'PairedImageDataset', 'use_hflip': True, 'use_rot': False}
    with pytest.raises(OptionError, match='datasets.train: use_flip and use_hflip'):
        adopt_fork_keys({'datasets': {'train': {'type': 'PairedImageDataset', 'use_flip': True, 'use_hflip': True}}})
