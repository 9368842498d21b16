"""One checkpoint reader: the same file gives the same weights through ``basicsr.test``, ``infer``, ``convert``
and the Python loaders, whatever the layout (BasicSR ``params``/``params_ema``, wrapper prefixes)."""
import glob
import json
from collections import OrderedDict

import cv2
import numpy as np
import torch
import yaml
from conftest import cli, run

from basicsr_restore.archs.irnext_arch import IRNeXt
from basicsr_restore.core import checkpoints

TINY = dict(IRNeXt.card.tiny)


def two_weights_file(path):
    """A BasicSR file whose ``params`` and ``params_ema`` differ, the EMA saved from a compiled network
    (``_orig_mod.`` prefix) wrapped in DDP (``module.``)."""
    torch.manual_seed(1)
    raw = IRNeXt(**TINY).state_dict()
    torch.manual_seed(2)
    ema = IRNeXt(**TINY).state_dict()
    prefixed = OrderedDict((f'module._orig_mod.{k}', v) for k, v in ema.items())
    torch.save({'params': raw, 'params_ema': prefixed}, path)
    return raw, ema


def test_key_rule_is_the_same_for_every_reader(tmp_path):
    raw, ema = two_weights_file(tmp_path / 'w.pth')
    for prefer_ema, expected in ((True, ema), (False, raw)):
        state, info = checkpoints.read_state_dict(str(tmp_path / 'w.pth'), prefer_ema=prefer_ema)
        assert list(state) == list(expected) and all(torch.equal(state[k], expected[k]) for k in state)
    assert info['stripped'] == {}  # 'params' has no prefix
    state, info = checkpoints.read_state_dict(str(tmp_path / 'w.pth'))
    assert info == {**info, 'key': 'params_ema', 'stripped': {'module.': len(ema), '_orig_mod.': len(ema)}}
    named, _ = checkpoints.read_state_dict(str(tmp_path / 'w.pth'), param_key='params')
    assert all(torch.equal(named[k], raw[k]) for k in raw)


def test_one_file_gives_the_same_tensors_through_test_infer_and_convert(tmp_path, capsys, demo_data):
    weights = tmp_path / 'w.pth'
    _, ema = two_weights_file(weights)
    lq_dir = demo_data / 'val' / 'lq'

    # convert: the detected weights are the EMA ones, prefixes stripped
    rc, out, err = cli(capsys, 'convert', weights, tmp_path / 'converted.pth', '--arch', 'IRNeXt',
                       '--arch-args', *[f'{k}={v}' for k, v in TINY.items()])
    assert rc == 0, err
    converted = torch.load(tmp_path / 'converted.pth', weights_only=True)['params']
    assert list(converted) == list(ema) and all(torch.equal(converted[k], ema[k]) for k in ema)

    # infer without -opt
    rc, out, err = cli(capsys, 'infer', '--input', lq_dir, '--output', tmp_path / 'infer', '--arch', 'IRNeXt',
                       '--weights', weights, '--arch-args', *[f'{k}={v}' for k, v in TINY.items()])
    assert rc == 0, err
    assert "key 'params_ema'" in out

    # stock basicsr.test, no param_key_g: the same rule, so the same picture
    opt = {'name': 'one_reader', 'model_type': 'RestorationModel', 'num_gpu': 0,
           'datasets': {'test_1': {'name': 'demo_val', 'type': 'PairedRestorationDataset',
                                   'dataroot_gt': str(demo_data / 'val' / 'gt'), 'dataroot_lq': str(lq_dir)}},
           'network_g': {'type': 'IRNeXt', **TINY},
           'path': {'pretrain_network_g': str(weights), 'strict_load_g': True},
           'val': {'save_img': True, 'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0}}}}
    (tmp_path / 'test.yml').write_text(yaml.safe_dump(opt))
    proc = run(['python', '-m', 'basicsr.test', '-opt', str(tmp_path / 'test.yml')], cwd=tmp_path)
    log = '\n'.join(open(p).read() for p in glob.glob(str(tmp_path / 'results' / 'one_reader' / '*.log')))
    assert "[key 'params_ema']" in log, proc.stdout[-2000:]
    tested = cv2.imread(glob.glob(str(tmp_path / 'results' / 'one_reader' / 'visualization' / 'demo_val' / '*.png'))[0])
    inferred = cv2.imread(glob.glob(str(tmp_path / 'infer' / '*.png'))[0])
    assert tested.shape == inferred.shape
    assert np.abs(tested.astype(int) - inferred.astype(int)).max() <= 1  # the same network; rounding aside

    # and the raw weights give another picture: the test above could fail
    torch.save({'params': torch.load(weights, weights_only=True)['params']}, tmp_path / 'raw.pth')
    rc, _, err = cli(capsys, 'infer', '--input', lq_dir, '--output', tmp_path / 'raw', '--arch', 'IRNeXt',
                     '--weights', tmp_path / 'raw.pth', '--arch-args', *[f'{k}={v}' for k, v in TINY.items()])
    other = cv2.imread(glob.glob(str(tmp_path / 'raw' / '*.png'))[0])
    assert rc == 0 and np.abs(other.astype(int) - inferred.astype(int)).max() > 8


def test_manifest_is_written_from_an_official_file_through_the_same_reader(tmp_path, capsys):
    from basicsr_restore.archs.card import load_manifest
    torch.manual_seed(0)
    state = IRNeXt().state_dict()
    torch.save({'model': OrderedDict((f'module.{k}', v) for k, v in state.items()), 'epoch': 3}, tmp_path / 'off.pkl')
    rc, out, err = cli(capsys, 'manifest', 'IRNeXt', '--preset', 'dehaze', '--weights', tmp_path / 'off.pkl',
                       '--source', 'a test', '--out', tmp_path / 'm.json')
    assert rc == 0, err
    written = json.load(open(tmp_path / 'm.json'))
    committed = load_manifest(IRNeXt, 'dehaze')
    committed.pop('official_constructor')  # stated by a person, kept when a manifest is rewritten in place
    assert written == {**committed, 'source': 'a test'}
    del state['Decoder.0.layers.0.main.0.main.0.weight']
    torch.save({'model': state}, tmp_path / 'cut.pkl')
    rc, _, err = cli(capsys, 'manifest', 'IRNeXt', '--preset', 'dehaze', '--weights', tmp_path / 'cut.pkl',
                     '--out', tmp_path / 'm2.json')
    assert rc == 2 and '1 missing keys: Decoder.0.layers.0.main.0.main.0.weight' in err
    assert not (tmp_path / 'm2.json').exists()
