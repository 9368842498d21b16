"""The GPU acceptance command's own path, at toy sizes on the CPU (``scripts/gpu_check.py --tiny``): fabricated GoPro
frames prepared as raw values, a torchrun training run of the recipe with speed best, basicsr.test of its checkpoint,
bench fp32 vs best and the data path on raw and png values, one report."""
import json
import os

from conftest import ROOT, run


def test_gpu_check_tiny_runs_the_whole_path(tmp_path):
    out = tmp_path / 'check'
    proc = run(['python', os.path.join(ROOT, 'scripts', 'gpu_check.py'), '--tiny', '--networks', 'IRNeXt', '--out',
                str(out)], cwd=tmp_path, timeout=600)
    assert 'gpu-check passed' in proc.stdout
    report = json.loads((out / 'report.json').read_text())
    assert report['passed'] and report['mode'] == 'tiny'
    steps = [s['step'] for s in report['steps']]
    assert steps == ['prepare (raw)', 'train IRNeXt', 'test IRNeXt', 'bench fp32 vs best', 'bench --data (raw)',
                     'lmdb-format png', 'bench --data (png)']
    assert all(s['status'] == 'ok' for s in report['steps'])
    assert (out / 'experiments' / 'gpu_check_IRNeXt' / 'models' / 'net_g_latest.pth').is_file()
    assert 'psnr' in report['sections']['test IRNeXt']
    assert '| IRNeXt |' in report['sections']['bench: fp32 vs best']
    for fmt in ('raw', 'png'):
        table = next(v for k, v in report['sections'].items() if k.startswith(f'data path ({fmt}'))
        assert 'PairedRestorationDataset' in table
    md = (out / 'REPORT.md').read_text()
    assert 'PASSED' in md and '| train IRNeXt | ok |' in md


def test_gpu_check_refuses_a_cpu_without_tiny(tmp_path):
    proc = run(['python', os.path.join(ROOT, 'scripts', 'gpu_check.py'), '--out', str(tmp_path / 'x')], cwd=tmp_path,
               check=False, env={'CUDA_VISIBLE_DEVICES': ''})
    assert proc.returncode == 2 and 'no CUDA GPU' in proc.stderr
