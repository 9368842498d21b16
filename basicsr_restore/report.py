"""``basicsr-restore report -opt X.yml``: how much did the trained network of a run restore?

For every validation set of the option file: PSNR/SSIM (RGB, as basicsr's metrics compute them) of the
degraded input and of the restored output against the ground truth, per image and mean, and one PNG strip
per image (degraded | restored | ground truth).
"""
import os

import numpy as np
import torch
from basicsr.data import build_dataset
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import tensor2img

from basicsr_restore.imageio import labelled, write_image
from basicsr_restore.inference import restore_any_size
from basicsr_restore.checkpoints import load_network, load_options


def run(args):
    opt = load_options(args.opt)
    name = opt['name']
    weights = args.weights or os.path.join('experiments', name, 'models', 'net_g_latest.pth')
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"weights '{weights}' not found: train first (python -m basicsr.train -opt "
                                f'{args.opt}) or pass --weights.')
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    spec = dict(opt['network_g'])
    net, _ = load_network(spec.pop('type'), spec, weights)
    net = net.to(device).eval()
    out_dir = args.out or os.path.join('results', f'{name}_report')
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    for key, ds_opt in opt.get('datasets', {}).items():
        if not key.startswith('val'):
            continue
        ds_opt = dict(ds_opt, phase='val', scale=opt.get('scale', 1))
        dataset = build_dataset(ds_opt)
        for item in dataset:
            lq = item['lq'][None].to(device)
            with torch.no_grad():
                out = restore_any_size(net, lq)
            imgs = [tensor2img(t.cpu()) for t in (lq, out, item['gt'][None])]
            image = os.path.splitext(os.path.basename(str(item['lq_path'])))[0]
            row = {'dataset': ds_opt.get('name', key), 'image': image,
                   'psnr_in': calculate_psnr(imgs[0], imgs[2], 0), 'psnr_out': calculate_psnr(imgs[1], imgs[2], 0),
                   'ssim_in': calculate_ssim(imgs[0], imgs[2], 0), 'ssim_out': calculate_ssim(imgs[1], imgs[2], 0)}
            strip = np.concatenate([labelled(imgs[0], f"degraded {row['psnr_in']:.2f} dB"),
                                    labelled(imgs[1], f"restored {row['psnr_out']:.2f} dB"),
                                    labelled(imgs[2], 'ground truth')], axis=1)
            row['strip'] = os.path.join(out_dir, f'{image}_strip.png')
            write_image(row['strip'], strip)
            rows.append(row)
    if not rows:
        raise ValueError(f'{args.opt}: no datasets.val* entry to report on')
    print(f'{name}: {weights}')
    print(f"{'image':<20} {'PSNR in':>8} {'PSNR out':>9} {'gain':>7} {'SSIM in':>8} {'SSIM out':>9}")
    for r in rows:
        print(f"{r['image']:<20} {r['psnr_in']:8.2f} {r['psnr_out']:9.2f} {r['psnr_out'] - r['psnr_in']:+7.2f} "
              f"{r['ssim_in']:8.4f} {r['ssim_out']:9.4f}   {r['strip']}")
    mean_in = float(np.mean([r['psnr_in'] for r in rows]))
    mean_out = float(np.mean([r['psnr_out'] for r in rows]))
    print(f"{'mean':<20} {mean_in:8.2f} {mean_out:9.2f} {mean_out - mean_in:+7.2f}")
    return 0
