"""Options and commands that fail loudly, and never lose or overwrite anything: unknown keys and names,
non-folder ``path`` options with the stock runners, partial loads, infer's outputs, Ctrl-C, and a preparation
killed while publishing its LMDBs. (doctor: test_hook.py; no runpy warning: asserted on the runs of
test_runners.py, test_resume.py, test_ddp.py and test_options.py.)"""
import copy
import os
import signal
import subprocess
import time

import cv2
import numpy as np
import pytest
import torch
from conftest import BIN, cli, noisy, photo, run, tiny_train_options, write_folder, write_options
from test_guard import built

import basicsr_restore  # noqa: F401
from basicsr_restore.commands.prepare.store import WriteOptions
from basicsr_restore.core.errors import OptionError
from basicsr_restore.core.state_dicts import CheckpointError
from basicsr_restore.host.option_checks import check_options


def parsed(opt, is_train=True):
    return dict(copy.deepcopy(opt), is_train=is_train)


# --------------------------------------------------------------------------------------------- options
def test_every_unknown_key_type_and_argument_is_named_with_the_closest_valid_one(small_pairs):
    opt = tiny_train_options(small_pairs, 'keys', 4)
    opt['train']['emma_decay'] = opt['train'].pop('ema_decay')
    opt['network_g']['n_feats'] = opt['network_g'].pop('n_feat')
    opt['datasets']['train']['gt_sise'] = 16
    opt['val']['metrics']['psnr']['test_y_chanel'] = True
    opt['train']['pixel_opt']['type'] = 'L1loss'
    opt['path']['pretrain_netwrok_g'] = 'x.pth'
    opt['speed'] = {'bf16': True}
    with pytest.raises(OptionError) as error:
        check_options(parsed(opt), 'x.yml')
    text = str(error.value)
    assert text.startswith('x.yml: 7 problem(s)')
    for expected in ("train.emma_decay: unknown key, not read by RestorationModel (losses are train.<name>_opt); did "
                     "you mean 'ema_decay'?",
                     "network_g.n_feats: unknown key, not read by MIRNet(); did you mean 'n_feat'?",
                     "datasets.train.gt_sise: unknown key, not read by PairedRestorationDataset or the dataloader; "
                     "did you mean 'gt_size'?",
                     "val.metrics.psnr.test_y_chanel: unknown key, not read by calculate_psnr(); did you mean "
                     "'test_y_channel'?",
                     "train.pixel_opt.type: 'L1loss' is not a registered loss; did you mean 'L1Loss'?",
                     "path.pretrain_netwrok_g: unknown key, not read by RestorationModel; did you mean "
                     "'pretrain_network_g'?",
                     'speed.bf16: unknown key, not read by the speed switches (docs/speed.md); valid: amp, '
                     'channels_last, checkpoint, compile, cudnn_benchmark, dynamic, tf32.',
                     'allow_unknown_keys: true'):
        assert expected in text, expected
    opt['allow_unknown_keys'] = True  # the switch for users with their own extensions: keys pass, names do not
    with pytest.raises(OptionError, match=r"^x.yml: train.pixel_opt.type: 'L1loss' is not a registered loss[^\n]*$"):
        check_options(parsed(opt), 'x.yml')
    opt['train']['pixel_opt']['type'] = 'L1Loss'
    opt['allow_unknown_keys'] = ['train.emma_decay', 'network_g', 'datasets.train.gt_sise', 'val.metrics',
                                 'path.pretrain_netwrok_g', 'speed']
    check_options(parsed(opt))
    opt['allow_unknown_keys'].remove('speed')
    with pytest.raises(OptionError, match='speed.bf16'):
        check_options(parsed(opt))
    with pytest.raises(OptionError, match="model_type 'RestorationModle' is not a registered model; did you mean "
                                          "'RestorationModel'"):
        check_options(dict(parsed(opt), model_type='RestorationModle'))


def test_the_stock_runner_stops_before_anything_runs_with_one_message(small_pairs, tmp_path):
    opt = tiny_train_options(small_pairs, 'typo', 4)
    opt['train']['emma_decay'] = opt['train'].pop('ema_decay')
    proc = run(['python', '-m', 'basicsr.train', '-opt', write_options(tmp_path / 't.yml', opt)], cwd=tmp_path,
               check=False)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    assert proc.stderr.startswith(f"basicsr-restore: -opt '{tmp_path / 't.yml'}': 1 problem(s)\n  - train.emma_decay")
    assert not (tmp_path / 'experiments').exists() and not (tmp_path / 'tb_logger').exists()


def test_weights_only_g_false_and_other_non_folder_path_options_work_with_the_stock_runners(small_pairs, tmp_path):
    """basicsr makes a folder of every ``path.*`` value: ``weights_only_g: false`` crashed both runners."""
    from basicsr_restore.archs.mirnet_arch import MIRNet
    state = MIRNet(n_feat=8, n_RRG=1, n_MSRB=1).state_dict()
    torch.save({'params': state, 'note': np.float64(1.0)}, tmp_path / 'legacy.pth')  # needs the full unpickler
    opt = tiny_train_options(small_pairs, 'legacy', 3)
    opt['path'].update(pretrain_network_g=str(tmp_path / 'legacy.pth'), weights_only_g=False,
                       allow_partial_load_g=False)
    run(['python', '-m', 'basicsr.train', '-opt', write_options(tmp_path / 'train.yml', opt)], cwd=tmp_path)
    test = {'name': 'legacy_test', 'model_type': 'RestorationModel', 'num_gpu': 0,
            'datasets': {'test_1': dict(opt['datasets']['val'], name='small_val')},
            'network_g': opt['network_g'], 'val': {'save_img': False},
            'path': {'pretrain_network_g': str(tmp_path / 'legacy.pth'), 'weights_only_g': False}}
    run(['python', '-m', 'basicsr.test', '-opt', write_options(tmp_path / 'test.yml', test)], cwd=tmp_path)
    for folder in ('experiments/legacy', 'results/legacy_test'):
        assert not any(name in ('False', 'false') for name in os.listdir(tmp_path / folder))
    model = built(tmp_path / 'refused', small_pairs)  # without the option the pickled file is refused
    with pytest.raises(CheckpointError, match='is not a weights-only file.*If you trust where it comes from, set '
                                              'path.weights_only_g: false'):
        model.load_network(model.net_g, str(tmp_path / 'legacy.pth'))


def test_a_partial_load_warns_with_counts_and_a_poor_fit_is_an_error(small_pairs, tmp_path):
    import logging
    model = built(tmp_path, small_pairs)
    net = model.get_bare_model(model.net_g)
    full = net.state_dict()
    most = {k: v for i, (k, v) in enumerate(full.items()) if i % 10}
    torch.save({'params': most}, tmp_path / 'most.pth')
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger('basicsr').addHandler(handler)
    try:
        model.load_network(net, str(tmp_path / 'most.pth'), strict=False)
    finally:
        logging.getLogger('basicsr').removeHandler(handler)
    warning = [r.getMessage() for r in records if 'non-strict load' in r.getMessage()]
    fit = f'{len(most)} of {len(full)} tensors of MIRNet fit: {len(full) - len(most)} missing'
    assert warning and fit in warning[0]
    torch.save({'params': dict(list(full.items())[:3])}, tmp_path / 'few.pth')
    with pytest.raises(CheckpointError, match=r'only 3 of \d+ tensors of MIRNet fit.*allow_partial_load_g: true'):
        model.load_network(net, str(tmp_path / 'few.pth'), strict=False)
    with pytest.raises(CheckpointError, match=r'does not fit MIRNet: \d+ missing keys.*path.strict_load_g: false'):
        model.load_network(net, str(tmp_path / 'few.pth'), strict=True)
    model.opt['path']['allow_partial_load_g'] = True
    model.load_network(net, str(tmp_path / 'few.pth'), strict=False)


# ----------------------------------------------------------------------------------------------- infer
@pytest.fixture(scope='module')
def mirnet_weights(tmp_path_factory):
    from basicsr_restore.archs.mirnet_arch import MIRNet
    path = tmp_path_factory.mktemp('mirnet') / 'w.pth'
    torch.manual_seed(0)
    torch.save({'params': MIRNet(n_feat=8, n_RRG=1, n_MSRB=1).state_dict()}, path)
    return path


def infer(capsys, weights, *args):
    return cli(capsys, 'infer', '--arch', 'MIRNet', '--weights', weights, '--device', 'cpu', *args, '--arch-args',
               'n_feat=8', 'n_RRG=1', 'n_MSRB=1')


def test_infer_keeps_the_extension_when_two_inputs_share_a_name(tmp_path, mirnet_weights, capsys, monkeypatch):
    img16 = photo((32, 36), 3, dtype=np.uint16)
    write_folder(tmp_path / 'in', {'coffee16.png': img16, 'coffee16.tif': img16[:, :, ::-1].copy(),
                                   'solo.png': photo((28, 32), 4)})
    write_folder(tmp_path / 'gt', {'coffee16.png': img16, 'solo.png': photo((28, 32), 4)})
    monkeypatch.chdir(tmp_path)
    assert infer(capsys, mirnet_weights, '-i', 'in', '-o', 'out', '--compare', '--gt', 'gt')[0] == 0
    out = sorted(os.listdir(tmp_path / 'out'))
    assert out == ['coffee16_png.png', 'coffee16_tif.tif', 'compare', 'metrics.csv', 'metrics.md', 'solo.png']
    assert sorted(os.listdir(tmp_path / 'out' / 'compare')) == ['coffee16_png.png', 'coffee16_tif.png', 'solo.png']
    rows = [line.split(',')[0] for line in (tmp_path / 'out' / 'metrics.csv').read_text().splitlines()]
    assert rows == ['image', 'coffee16_png', 'coffee16_tif', 'solo', 'mean']


def test_infer_never_writes_over_its_inputs(tmp_path, mirnet_weights, capsys, monkeypatch):
    original = photo((32, 32), 5)
    write_folder(tmp_path / 'imgs', {'a.png': original})
    monkeypatch.chdir(tmp_path)
    rc, _, err = infer(capsys, mirnet_weights, '-i', 'imgs', '-o', 'imgs', '--overwrite')
    assert rc == 2
    assert f"the output '{os.path.join('imgs', 'a.png')}' is the input" in err
    assert np.array_equal(cv2.imread(str(tmp_path / 'imgs' / 'a.png')), original)
    assert infer(capsys, mirnet_weights, '-i', 'imgs', '-o', 'imgs', '--suffix', '_restored')[0] == 0
    assert sorted(os.listdir(tmp_path / 'imgs')) == ['a.png', 'a_restored.png']


# ------------------------------------------------------------------------------- Ctrl-C and preparation
def test_ctrl_c_during_prepare_ends_with_one_line_and_the_rerun_finishes(tmp_path, capsys, monkeypatch):
    # long enough (seconds) that a busy machine still signals it mid-run rather than after it has finished
    images = {f'{i:03d}.png': photo((160, 160), seed=i) for i in range(300)}
    write_folder(tmp_path / 'gt', images)
    write_folder(tmp_path / 'lq', {k: noisy(v, seed=i) for i, (k, v) in enumerate(images.items())})
    args = [os.path.join(BIN, 'basicsr-restore'), 'prepare', 'paired', '--gt', 'gt', '--lq', 'lq', '--out', 'out',
            '--compress-level', '9', '--format', 'png', '--workers', '1']  # PNG at level 9 on one core: seconds
    # Ctrl-C as a terminal delivers it: SIGINT at its default in the child (a pytest worker may have inherited it
    # ignored, and Python keeps an ignored SIGINT ignored)
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (tmp_path / 'out' / 'gt.lmdb.partial').exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, 'the preparation ended before it could be interrupted'
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert 'Traceback' not in err
    assert 'basicsr-restore prepare: interrupted. Finished LMDBs are complete and kept' in err
    assert not (tmp_path / 'out' / 'gt.lmdb').exists() and not (tmp_path / 'out' / 'lq.lmdb').exists()
    monkeypatch.chdir(tmp_path)
    rc, out, _ = cli(capsys, *args[1:])
    assert rc == 0 and 'wrote 300 pairs' in out


def test_a_preparation_killed_between_its_renames_is_refused_then_finished(tmp_path, monkeypatch, capsys):
    from basicsr_restore.data import lmdb_io
    from basicsr_restore.data.paired_dataset import PairedRestorationDataset
    write_folder(tmp_path / 'gt', {'a.png': photo((32, 32), 1), 'b.png': photo((32, 32), 2)})
    write_folder(tmp_path / 'lq', {'a.png': photo((32, 32), 3), 'b.png': photo((32, 32), 4)})
    monkeypatch.chdir(tmp_path)
    args = ['prepare', 'paired', '--gt', 'gt', '--lq', 'lq', '--out', 'out']
    assert cli(capsys, *args)[0] == 0
    real_publish, calls = lmdb_io.publish_partial, []

    def dies_after_the_first(path):  # a kill between the two renames of an --overwrite run
        if calls:
            raise KeyboardInterrupt
        calls.append(path)
        real_publish(path)

    from basicsr_restore.commands.prepare import paired
    monkeypatch.setattr(lmdb_io, 'publish_partial', dies_after_the_first)
    write_folder(tmp_path / 'gt', {'c.png': photo((32, 32), 5)})
    write_folder(tmp_path / 'lq', {'c.png': photo((32, 32), 6)})
    with pytest.raises(KeyboardInterrupt):
        paired.write_pairs(paired.match_pairs(str(tmp_path / 'gt'), str(tmp_path / 'lq')), str(tmp_path / 'out'),
                           write=WriteOptions(overwrite=True))
    monkeypatch.setattr(lmdb_io, 'publish_partial', real_publish)
    out = tmp_path / 'out'
    assert sorted(os.listdir(out)) == ['.basicsr-restore-commit', 'gt.lmdb', 'lq.lmdb', 'lq.lmdb.partial']
    opt = {'name': 'half', 'phase': 'val', 'dataroot_gt': str(out / 'gt.lmdb'), 'dataroot_lq': str(out / 'lq.lmdb')}
    with pytest.raises(ValueError, match='interrupted while its LMDBs were being published.*same `basicsr-restore '
                                         'prepare` command again'):
        PairedRestorationDataset(opt)
    rc, printed, _ = cli(capsys, *args)  # no --overwrite: the publication is finished, nothing rebuilt
    assert rc == 0 and 'finished an interrupted preparation: gt.lmdb, lq.lmdb' in printed
    assert sorted(os.listdir(out)) == ['gt.lmdb', 'lq.lmdb']
    assert len(PairedRestorationDataset(opt)) == 3
