"""NaN/Inf-safe training steps: a bad step changes nothing, repeated bad steps stop the run, non-finite weights
are never saved, and ``infer`` refuses non-finite weights instead of writing black images."""
import copy
import os

import pytest
import torch
from conftest import batch, built, cli, photo, run, tiny_train_options, write_options

import basicsr_restore  # noqa: F401
from basicsr_restore.core.errors import TrainingStopped


def everything(model):
    """Every tensor a step could change: weights and buffers (BatchNorm statistics), EMA, optimizer state."""
    net = model.get_bare_model(model.net_g)
    return {'net': copy.deepcopy(net.state_dict()), 'ema': copy.deepcopy(model.net_g_ema.state_dict()),
            'optim': copy.deepcopy(model.optimizer_g.state_dict())}


def assert_equal_states(a, b):
    for part in ('net', 'ema'):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f'{part} {key} changed'
    sa, sb = a['optim']['state'], b['optim']['state']
    assert sa.keys() == sb.keys()
    for i in sa:
        for name in sa[i]:
            assert torch.equal(torch.as_tensor(sa[i][name]), torch.as_tensor(sb[i][name])), f'optimizer {i} {name}'


IRNEXT = {'type': 'IRNeXt', 'num_res': 1, 'base_channel': 8}  # has BatchNorm


def test_a_nan_batch_leaves_batchnorm_ema_and_optimizer_untouched(small_pairs, tmp_path, caplog):
    model = built(tmp_path, small_pairs, IRNEXT)
    assert any('running_var' in k for k in model.net_g.state_dict())
    model.feed_data(batch(0))
    model.optimize_parameters(1)
    before = everything(model)
    model.feed_data(batch(1, nan=True))  # the forward writes NaN batch statistics into BatchNorm
    model.optimize_parameters(2)
    assert_equal_states(before, everything(model))
    assert model.guard.in_a_row == 1
    model.feed_data(batch(2))
    model.optimize_parameters(3)  # training goes on from the good state
    after = everything(model)
    assert all(torch.isfinite(v).all() for v in after['net'].values() if v.is_floating_point())
    first = 'Encoder.0.layers.0.main.0.main.0.weight'
    assert not torch.equal(after['net'][first], before['net'][first])
    assert model.guard.in_a_row == 0 and model.guard.skipped == 1


def test_repeated_bad_steps_stop_with_the_iteration_terms_and_last_checkpoint(small_pairs, tmp_path):
    model = built(tmp_path, small_pairs, max_skipped_steps=2)
    model.feed_data(batch(0))
    model.optimize_parameters(1)
    model.save(0, 1)
    for it in (2, 3):
        model.feed_data(batch(it, nan=True))
        model.optimize_parameters(it)
    model.feed_data(batch(4, nan=True))
    with pytest.raises(TrainingStopped) as stop:
        model.optimize_parameters(4)
    message = str(stop.value)
    assert 'training stopped at iteration 4: 3 steps in a row had non-finite values (l_pixel, gradients)' in message
    assert 'train.max_skipped_steps is 2' in message
    assert os.path.join('models', 'net_g_1.pth') in message and os.path.join('training_states', '1.state') in message


def test_non_finite_weights_are_never_saved(small_pairs, tmp_path):
    model = built(tmp_path, small_pairs)
    model.save(0, 2)
    with torch.no_grad():
        next(model.net_g_ema.parameters()).view(-1)[0] = float('inf')
    with pytest.raises(TrainingStopped, match=r'net_g_ema holds NaN/Inf in 1 tensors .* not saved\. Last good '
                                              r'checkpoint: .*net_g_2\.pth'):
        model.save(0, 4)
    models = tmp_path / 'experiments' / 'guard' / 'models'
    assert sorted(os.listdir(models)) == ['net_g_2.pth']
    assert sorted(os.listdir(tmp_path / 'experiments' / 'guard' / 'training_states')) == ['2.state']


def test_diverging_run_stops_with_one_message_and_writes_no_latest(small_pairs, tmp_path):
    opt = tiny_train_options(small_pairs, 'diverge', 40, max_skipped_steps=3)
    opt['train']['optim_g']['lr'] = 1e30
    opt['train']['grad_clip'] = None
    del opt['train']['grad_clip']
    opt['logger']['save_checkpoint_freq'] = 1000
    proc = run(['python', '-m', 'basicsr.train', '-opt', write_options(tmp_path / 'd.yml', opt)], cwd=tmp_path,
               check=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('basicsr-restore: training stopped at iteration ') and 'Traceback' not in proc.stderr
    assert 'non-finite values (l_pixel' in last and 'Last good checkpoint: none' in last
    assert not (tmp_path / 'experiments' / 'diverge' / 'models' / 'net_g_latest.pth').exists()


def test_infer_refuses_weights_with_nan(tmp_path, capsys, monkeypatch):
    from basicsr_restore.archs.mirnet_arch import MIRNet
    net = MIRNet(n_feat=8, n_RRG=1, n_MSRB=1)
    state = net.state_dict()
    state['conv_in.weight'][0, 0, 0, 0] = float('nan')
    torch.save({'params': state}, tmp_path / 'nan.pth')
    import cv2
    cv2.imwrite(str(tmp_path / 'in.png'), photo((32, 32)))
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli(capsys, 'infer', '-i', 'in.png', '-o', 'out', '--arch', 'MIRNet', '--weights', 'nan.pth',
                     '--arch-args', 'n_feat=8', 'n_RRG=1', 'n_MSRB=1')
    assert rc == 2
    assert "--weights 'nan.pth' holds NaN/Inf in 1 of" in err and 'conv_in.weight' in err
    assert not (tmp_path / 'out' / 'in.png').exists()
