"""The GPU acceptance run (``make gpu-check``): everything a user does on a GPU, once, in under 10 minutes.

1. fabricates a GoPro-layout set from scikit-image's photos (blurred / sharp frames) and prepares it with
   ``basicsr-restore prepare gopro --format raw``;
2. for every network: ``torchrun --nproc_per_node=1 -m basicsr.train`` of its shipped recipe with ``speed: best`` on
   that set (30 iterations, validation and a checkpoint at the end), then ``python -m basicsr.test`` of two test
   frames with the checkpoint it wrote;
3. ``basicsr-restore bench``: every network, fp32 vs best, inference at 1280x720 batch 1 and training at batch 8 of
   256x256 (through the model's own training step);
4. ``basicsr-restore bench --data`` of the GoPro recipe on the prepared set, raw and png values, with the workers one
   GPU of an 8-GPU node gets (an eighth of the cores, at least 1).

Everything (data, runs, logs) stays in ``--out``. Writes ``REPORT.md`` and ``report.json`` there and exits non-zero at
the first failure, printing its log. ``--tiny`` runs the same path at toy sizes (small frames, the networks' tiny
configurations, 3 iterations) and on the CPU when there is no GPU: the test suite runs it.

    python scripts/gpu_check.py [--out gpu-check] [--tiny] [--networks IRNeXt,ChaIR]
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time

import yaml

from basicsr_restore.commands.bench import RECIPES  # the shipped recipe of each network, as bench uses them

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETWORKS = tuple(RECIPES)
#: sizes of the two modes: frames (h, w), train/test frame counts, crop of the prepared train frames, training patch,
#: batch, iterations, bench flags
SIZES = {
    'full': dict(frame=(720, 1280), train_frames=24, test_frames=2, crop=512, patch=256, batch=8, iters=30,
                 bench=['--size', '720x1280', '--patch', '256', '--train-batch', '8', '--warmup', '2', '--runs', '5'],
                 data_batches=100),
    'tiny': dict(frame=(96, 128), train_frames=3, test_frames=2, crop=64, patch=32, batch=2, iters=3,
                 bench=['--size', '64', '--no-train', '--warmup', '0', '--runs', '1'],  # training: tests/test_bench
                 data_batches=4),
}


class Failed(Exception):
    pass


class Report:
    def __init__(self, out, mode):
        self.out, self.mode, self.steps = out, mode, []
        self.started = time.time()

    def run(self, name, args, timeout, env=None):
        """Run one step (a command); its output goes to ``logs/<name>.log``; a failure ends the check."""
        log = os.path.join(self.out, 'logs', f'{name}.log')
        os.makedirs(os.path.dirname(log), exist_ok=True)
        start = time.time()
        with open(log, 'w', encoding='utf-8') as f:
            try:
                proc = subprocess.run(args, cwd=self.out, stdout=f, stderr=subprocess.STDOUT, timeout=timeout,
                                      env=dict(os.environ, PYTHONUNBUFFERED='1', **(env or {})))
                rc = proc.returncode
            except subprocess.TimeoutExpired:
                rc = 'timeout'
        shown = [os.path.relpath(a, ROOT) if os.path.isabs(a) and a.startswith(ROOT + os.sep) else a for a in args]
        step = {'step': name, 'command': ' '.join(shown),
                'seconds': round(time.time() - start, 1), 'status': 'ok' if rc == 0 else f'failed ({rc})',
                'log': os.path.relpath(log, self.out)}
        self.steps.append(step)
        print(f"[{step['seconds']:7.1f} s] {name}: {step['status']}", flush=True)
        if rc != 0:
            with open(log, encoding='utf-8') as f:
                tail = f.read()[-6000:]
            raise Failed(f'{name} failed ({rc}): {step["command"]}\n--- last lines of {log} ---\n{tail}')
        with open(log, encoding='utf-8') as f:
            return f.read()

    def write(self, sections, error=None):
        data = {'mode': self.mode, 'date': datetime.datetime.now().isoformat(timespec='seconds'),
                'seconds': round(time.time() - self.started, 1), 'passed': error is None, 'error': error,
                'steps': self.steps, 'sections': sections}
        with open(os.path.join(self.out, 'report.json'), 'w', encoding='utf-8') as f:
            json.dump(data, f, indent=1)
        lines = [f"# gpu-check ({self.mode}) {data['date']}: {'PASSED' if error is None else 'FAILED'} in "
                 f"{data['seconds']} s", '', '| step | status | seconds | command |', '|---|---|---:|---|']
        lines += [f"| {s['step']} | {s['status']} | {s['seconds']} | `{s['command']}` |" for s in self.steps]
        for title, text in sections.items():
            lines += ['', f'## {title}', '', text]
        if error:
            lines += ['', '## failure', '', '```', error, '```']
        with open(os.path.join(self.out, 'REPORT.md'), 'w', encoding='utf-8') as f:
            f.write('\n'.join(lines) + '\n')


def fabricate_gopro(src, size, rng_seed=0):
    """A GoPro layout (``{train,test}/{blur,sharp}/GOPR0000_00_00_<frame>.png``) of crops of scikit-image's photos,
    the blurred frame a horizontal motion blur of the sharp one."""
    import cv2
    import numpy as np
    from skimage import data
    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(rng_seed)
    h, w = size['frame']
    for split, count in (('train', size['train_frames']), ('test', size['test_frames'])):
        for i in range(count):
            img = cv2.resize(photos[i % len(photos)][:, :, ::-1], (w, h), interpolation=cv2.INTER_CUBIC)
            shift = rng.integers(-8, 9, size=2)
            sharp = np.roll(img, tuple(shift), axis=(0, 1))
            k = 3 + 2 * int(rng.integers(1, 6))
            blur = cv2.filter2D(sharp, -1, np.full((1, k), 1.0 / k))
            for kind, frame in (('sharp', sharp), ('blur', blur)):
                folder = os.path.join(src, split, kind)
                os.makedirs(folder, exist_ok=True)
                cv2.imwrite(os.path.join(folder, f'GOPR0000_00_00_{i:06d}.png'), frame)


def recipe_options(network, data, size, tiny, cuda, out):
    """The network's shipped recipe, on the prepared set, with speed best, for ``size['iters']`` iterations."""
    with open(os.path.join(ROOT, RECIPES[network]), encoding='utf-8') as f:
        opt = yaml.safe_load(f)
    iters = size['iters']
    opt['name'] = f'gpu_check_{network}'
    opt['num_gpu'] = 1 if cuda else 0
    opt['speed'] = 'best'
    train = opt['datasets']['train']
    train.update(type='PairedRestorationDataset', dataroot_gt=f'{data}/train/gt.lmdb',
                 dataroot_lq=f'{data}/train/lq.lmdb', gt_size=size['patch'], batch_size_per_gpu=size['batch'],
                 num_worker_per_gpu=0 if tiny else 4)
    for key in ('mini_batch_sizes', 'iters', 'gt_sizes'):
        train.pop(key, None)
    opt['datasets'] = {'train': train, 'val': {
        'name': 'check_test', 'type': 'PairedRestorationDataset', 'dataroot_gt': f'{data}/test/gt.lmdb',
        'dataroot_lq': f'{data}/test/lq.lmdb', 'val_crop_size': size['patch']}}
    import torch
    from basicsr.utils.registry import ARCH_REGISTRY  # filled with this package's networks (imported above)

    from basicsr_restore.archs.card import size_rule
    if tiny:
        opt['network_g'] = {'type': network, **ARCH_REGISTRY.get(network).card.tiny}
    spec = dict(opt['network_g'])
    with torch.device('meta'):
        patch = size_rule(ARCH_REGISTRY.get(spec.pop('type'))(**spec)).fit(size['patch'])  # the network's size rule
    train['gt_size'] = patch
    opt['datasets']['val']['val_crop_size'] = patch
    t = opt['train']
    t['total_iter'] = iters
    sched = t.get('scheduler') or {}
    if 'warmup_iter' in sched:
        sched['warmup_iter'] = min(sched['warmup_iter'], iters // 3)
    if 'total_iter' in sched:
        sched['total_iter'] = iters
    for spec in t.values():
        if isinstance(spec, dict) and spec.get('type') == 'IntraCRLoss':
            spec['vgg_weights'] = 'random'  # no download: an untrained VGG19 costs the same
    opt['val'].update(val_freq=iters)
    opt['logger'].update(print_freq=max(1, iters // 3), save_checkpoint_freq=iters, use_tb_logger=False)
    opt['path'] = {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None}
    if not cuda:
        opt['dist_params'] = {'backend': 'gloo', 'port': 29500}
    path = os.path.join(out, 'options', f'{network}.yml')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    return path, opt


def test_options(network, opt, data, weights, out):
    test = {'name': f'gpu_check_{network}_test', 'model_type': opt['model_type'], 'scale': 1,
            'num_gpu': opt['num_gpu'], 'speed': 'best', 'network_g': opt['network_g'],
            'datasets': {'test_1': {'name': 'check_test', 'type': 'PairedRestorationDataset',
                                    'dataroot_gt': f'{data}/test/gt.lmdb', 'dataroot_lq': f'{data}/test/lq.lmdb'}},
            'path': {'pretrain_network_g': weights, 'strict_load_g': True},
            'val': {'save_img': False, 'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0,
                                                             'test_y_channel': False}}}}
    path = os.path.join(out, 'options', f'{network}_test.yml')
    with open(path, 'w', encoding='utf-8') as f:
        yaml.safe_dump(test, f, sort_keys=False)
    return path


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default='gpu-check', help='folder for the data, runs and the report (default gpu-check)')
    p.add_argument('--tiny', action='store_true', help='toy sizes, on the CPU when there is no GPU (the test suite)')
    p.add_argument('--networks', default=','.join(NETWORKS), help='comma-separated networks (default: all five)')
    args = p.parse_args(argv)
    import torch
    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        print('gpu-check: no CUDA GPU is visible (torch.cuda.is_available() is False); use --tiny for the CPU path.',
              file=sys.stderr)
        return 2
    networks = [n.strip() for n in args.networks.split(',') if n.strip()]
    unknown = sorted(set(networks) - set(NETWORKS))
    if unknown:
        print(f"gpu-check: unknown network(s) {', '.join(unknown)}; choose from {', '.join(NETWORKS)}.",
              file=sys.stderr)
        return 2
    mode = 'tiny' if args.tiny else 'full'
    size = SIZES[mode]
    out = os.path.abspath(args.out)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    report, sections = Report(out, mode), {}
    exe, cli = sys.executable, os.path.join(os.path.dirname(sys.executable), 'basicsr-restore')
    workers = str(max(1, (os.cpu_count() or 8) // 8))
    env = {}
    try:
        src, data = os.path.join(out, 'src'), os.path.join(out, 'data')
        fabricate_gopro(src, size)
        report.run('prepare (raw)', [cli, 'prepare', 'gopro', src, data, '--format', 'raw', '--crop', str(size['crop']),
                                     '--step', str(size['crop'] // 2)], 300)
        for network in networks:
            opt_path, opt = recipe_options(network, data, size, args.tiny, cuda, out)
            report.run(f'train {network}', [exe, '-m', 'torch.distributed.run', '--nproc_per_node=1',
                                            f'--master_port={free_port()}', '-m', 'basicsr.train', '-opt', opt_path,
                                            '--launcher', 'pytorch'], 420, env)
            weights = os.path.join(out, 'experiments', opt['name'], 'models', 'net_g_latest.pth')
            if not os.path.isfile(weights):
                raise Failed(f'train {network}: no checkpoint at {weights}')
            log = report.run(f'test {network}', [exe, '-m', 'basicsr.test', '-opt',
                                                 test_options(network, opt, data, weights, out)], 300, env)
            psnr = [line.strip() for line in log.splitlines() if '# psnr' in line]
            sections[f'test {network}'] = psnr[-1] if psnr else '(no PSNR line)'
        bench_json = os.path.join(out, 'bench.json')
        arch = ['--arch', networks[0]] if len(networks) == 1 else []
        text = report.run('bench fp32 vs best', [cli, 'bench', *arch, *size['bench'], '--mode', 'fp32', '--vs', 'best',
                                                 '--json', bench_json], 540)
        sections['bench: fp32 vs best'] = text[text.find('| network'):].strip()
        data_opt = os.path.join(out, 'options', 'data.yml')
        opt_path, opt = recipe_options('IRNeXt', data, size, args.tiny, cuda, out)
        for fmt in ('raw', 'png'):
            if fmt == 'png':
                report.run('lmdb-format png', [cli, 'prepare', 'lmdb-format', data, data + '_png', '--format', 'png'],
                           300)
                for k in ('dataroot_gt', 'dataroot_lq'):
                    opt['datasets']['train'][k] = opt['datasets']['train'][k].replace(data, data + '_png')
            with open(data_opt, 'w', encoding='utf-8') as f:
                yaml.safe_dump(opt, f, sort_keys=False)
            text = report.run(f'bench --data ({fmt})', [cli, 'bench', '--data', '-opt', data_opt, '--workers', workers,
                                                        '--batches', str(size['data_batches'])], 300)
            sections[f'data path ({fmt}, {workers} worker(s))'] = text[text.find('| option file'):].strip()
    except Failed as exc:
        report.write(sections, str(exc))
        print(f'gpu-check FAILED: {exc}', file=sys.stderr)
        print(f"report: {os.path.join(out, 'REPORT.md')}", file=sys.stderr)
        return 1
    report.write(sections)
    print(f"gpu-check passed: {os.path.join(out, 'REPORT.md')}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
