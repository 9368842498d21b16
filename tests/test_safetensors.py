"""``.safetensors`` weights: read by the one reader (so by every tool), written by the model
(``logger.save_format: safetensors``) and ``convert --to safetensors``; damaged or lying files give one line."""
import glob
import itertools
import json
import math
import os
import re
import struct

import pytest
import torch
from conftest import built, cli, run, tiny_train_options, write_options

from basicsr_restore.archs.irnext_arch import IRNeXt
from basicsr_restore.core import checkpoints, resume, safetensors_io
from basicsr_restore.core.errors import TrainingStopped
from basicsr_restore.core.state_dicts import CheckpointError

NETWORKS = ['MIRNet', 'ChaIR', 'IRNeXt', 'DRCNet', 'EIRN']


def randomized(net, seed):
    """A copy of ``net``'s state dict after every float parameter and buffer was drawn at random (buffers too, so
    nothing is trivially zero; tied parameters, as MIRNet's and EIRN's shared PReLUs, stay tied)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for tensor in itertools.chain(net.parameters(), net.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor))
    return {k: v.clone() for k, v in net.state_dict().items()}


def tiny_state(name, seed):
    cls = checkpoints.arch_class(name)
    return randomized(cls(**cls.card.tiny), seed)


def craft(path, header, data=b''):
    """A safetensors file made by hand: 8-byte little-endian length, the JSON header, the data."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack('<Q', len(text)) + text + data)
    return path


def one_line_error(path, *fragments, **kw):
    """The message of reading ``path`` (it must fail with one line naming the file and the problem)."""
    with pytest.raises(CheckpointError) as caught:
        checkpoints.read_state_dict(str(path), **kw)
    message = str(caught.value)
    assert '\n' not in message and str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ------------------------------------------------------------------------------------------------- round trip
@pytest.mark.parametrize('name', NETWORKS)
def test_round_trip_is_bit_exact_and_keeps_the_record(tmp_path, name):
    cls = checkpoints.arch_class(name)
    raw, ema = tiny_state(name, 1), tiny_state(name, 2)
    record = {'type': name, **cls.card.tiny}
    path = tmp_path / f'{name}.safetensors'
    checkpoints.dump_weights({'params': raw, 'params_ema': ema, 'network_g': record}, path, 'safetensors')
    assert path.read_bytes()[8:9] == b'{'  # a real safetensors file, not a torch zip
    for param_key, expected in ((None, ema), ('params', raw)):  # EMA first for restoring, params when asked
        state, info = checkpoints.read_state_dict(str(path), param_key=param_key)
        assert info['key'] == (param_key or 'params_ema')
        assert set(state) == set(expected)
        for key, value in expected.items():
            assert state[key].dtype == value.dtype and torch.equal(state[key], value), key
    # the network is built from the record in the file's metadata, no --arch and no --trusted
    net, info = checkpoints.open_network(str(path))
    assert info['found'] == 'recorded in the file (network_g)'
    assert (info['name'], info['kwargs']) == (name, cls.card.tiny)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in ema.items())
    assert checkpoints.network_record(checkpoints.read_checkpoint(str(path))) == (name, cls.card.tiny)


def test_recognised_by_content_and_bare_state_dicts(tmp_path):
    """A bare state dict (another project's file) under any name, e.g. ``.bin``, with wrapper prefixes."""
    state = tiny_state('IRNeXt', 3)
    import safetensors.torch
    path = tmp_path / 'model.bin'
    safetensors.torch.save_file({f'module.{k}': v for k, v in state.items()}, str(path))
    read, info = checkpoints.read_state_dict(str(path))
    assert info['key'] is None and info['stripped'] == {'module.': len(state)}
    assert all(torch.equal(read[k], v) for k, v in state.items())
    net, info = checkpoints.open_network(str(path))  # identified from its key layout
    assert info['name'] == 'IRNeXt' and IRNeXt.card.tiny.items() <= info['kwargs'].items()


def test_model_reads_params_ema_by_default_and_params_when_asked(tmp_path, small_pairs):
    """RestorationModel.load_network (path.pretrain_network_g): ``params_ema`` for restoring, ``param_key_g``
    honoured, and no ``weights_only_g: false`` needed."""
    model = built(tmp_path, small_pairs)
    net = model.get_bare_model(model.net_g)
    raw, ema = randomized(net, 1), randomized(net, 2)
    path = tmp_path / 'w.safetensors'
    safetensors_io.write({'params': raw, 'params_ema': {f'module.{k}': v for k, v in ema.items()}}, path)
    model.opt['is_train'] = False  # as in basicsr.test
    model.load_network(model.net_g, str(path))
    assert all(torch.equal(net.state_dict()[k], v) for k, v in ema.items())
    model.opt['path']['param_key_g'] = 'params'
    model.load_network(model.net_g, str(path))
    assert all(torch.equal(net.state_dict()[k], v) for k, v in raw.items())


# -------------------------------------------------------------------------------------------------- bad input
@pytest.fixture
def good(tmp_path):
    path = tmp_path / 'good.safetensors'
    safetensors_io.write({'params': tiny_state('IRNeXt', 4)}, path)
    return path


def test_truncated_files(tmp_path, good):
    data = good.read_bytes()
    header_end = 8 + struct.unpack('<Q', data[:8])[0]
    for cut, fragment in ((5, 'is truncated: 5 bytes, less than the 8-byte header length'),
                          (header_end - 10, 'is truncated: its header needs'),
                          (len(data) - 10, 'is truncated or its header lies')):
        bad = tmp_path / f'cut{cut}.safetensors'
        bad.write_bytes(data[:cut])
        one_line_error(bad, fragment)


def test_headers_that_lie(tmp_path):
    four = struct.pack('<4f', 1, 2, 3, 4)
    cases = {
        'beyond': ({'w': {'dtype': 'F32', 'shape': [8], 'data_offsets': [0, 32]}}, four,
                   "is truncated or its header lies: tensor 'w' ends at byte 32 of the data, the file holds 16"),
        'overlap': ({'a': {'dtype': 'F32', 'shape': [3], 'data_offsets': [0, 12]},
                     'b': {'dtype': 'F32', 'shape': [2], 'data_offsets': [8, 16]}}, four,
                    "tensors 'a' and 'b' overlap"),
        'size': ({'w': {'dtype': 'F32', 'shape': [2, 2], 'data_offsets': [0, 12]}}, four[:12],
                 "tensor 'w' (F32, shape [2, 2]) needs 16 bytes, its offsets [0, 12] give 12"),
        'gap': ({'w': {'dtype': 'F32', 'shape': [2], 'data_offsets': [8, 16]}}, four,
                "bytes 0 to 8 of the data, before tensor 'w', belong to no tensor"),
        'dtype': ({'w': {'dtype': 'Q7', 'shape': [4], 'data_offsets': [0, 16]}}, four, "has the dtype 'Q7'"),
    }
    for label, (header, data, fragment) in cases.items():
        one_line_error(craft(tmp_path / f'{label}.safetensors', header, data), fragment)
    # the same checks pass a well-formed hand-made file
    fine = craft(tmp_path / 'fine.safetensors', {'w': {'dtype': 'F32', 'shape': [2, 2], 'data_offsets': [0, 16]}}, four)
    state, _ = checkpoints.read_state_dict(str(fine))
    assert torch.equal(state['w'], torch.tensor([[1., 2.], [3., 4.]]))


def test_header_that_is_not_json(tmp_path, capsys):
    bad = craft(tmp_path / 'bad.safetensors', b'{"w": {"dtype": "F32", shape: [1]}}', b'\0' * 4)
    one_line_error(bad, 'its header is not JSON')
    rc, out, err = cli(capsys, 'convert', bad, tmp_path / 'out.safetensors')  # what a user sees
    assert rc == 2 and err.count('\n') == 1 and str(bad) in err and 'its header is not JSON' in err
    assert not (tmp_path / 'out.safetensors').exists()


def test_a_library_error_is_one_line(good, monkeypatch):
    import safetensors.torch

    def refuse(*args, **kwargs):
        raise safetensors.SafetensorError('Error while deserializing header: MetadataIncompleteBuffer\ndetails')
    monkeypatch.setattr(safetensors.torch, 'load_file', refuse)
    one_line_error(good, 'is not a readable safetensors file (SafetensorError: Error while deserializing header: '
                         'MetadataIncompleteBuffer)')


def test_non_finite_weights_are_refused_on_reading_and_never_written(tmp_path):
    state = tiny_state('IRNeXt', 5)
    key = next(iter(state))
    state[key][0] = math.nan
    import safetensors.torch
    bad = tmp_path / 'nan.safetensors'
    safetensors.torch.save_file({f'params.{k}': v.contiguous() for k, v in state.items()}, str(bad))
    one_line_error(bad, 'holds NaN/Inf in 1 of', key)
    with pytest.raises(CheckpointError, match='NaN/Inf'):
        safetensors_io.write({'params': state}, tmp_path / 'out.safetensors')
    assert os.listdir(tmp_path) == ['nan.safetensors']  # nothing written, no temporary left


def test_the_model_never_saves_nan_weights(tmp_path, small_pairs):
    model = built(tmp_path, small_pairs)
    model.opt['logger'] = {'save_format': 'safetensors'}
    models = tmp_path / 'experiments' / 'guard' / 'models'
    model.save(0, 2)
    assert sorted(os.listdir(models)) == ['net_g_2.safetensors']
    with torch.no_grad():
        next(model.net_g.parameters()).fill_(math.nan)
    with pytest.raises(TrainingStopped, match=r'Last good checkpoint: .*net_g_2\.safetensors'):
        model.save(0, 4)
    assert sorted(os.listdir(models)) == ['net_g_2.safetensors']


# ----------------------------------------------------------------------------------------- resume, convert
def test_auto_resume_skips_a_damaged_safetensors_network(tmp_path):
    models, states = tmp_path / 'models', tmp_path / 'training_states'
    models.mkdir()
    states.mkdir()
    opt = {'network_g': {'type': 'IRNeXt'}, 'logger': {'save_format': 'safetensors'},
           'path': {'models': str(models), 'training_states': str(states)}}
    for it in (2, 4):
        torch.save({'iter': it}, states / f'{it}.state')
        safetensors_io.write({'params': tiny_state('IRNeXt', it)}, models / f'net_g_{it}.safetensors')
    data = (models / 'net_g_4.safetensors').read_bytes()
    (models / 'net_g_4.safetensors').write_bytes(data[:-100])
    assert resume.newest_loadable_state(opt, str(states)) == str(states / '2.state')
    # whichever format the iteration was saved in (the option may have changed during the run)
    assert resume.network_file(dict(opt, logger={}), 'g', 2) == str(models / 'net_g_2.safetensors')
    torch.save({'params': tiny_state('IRNeXt', 6)}, models / 'net_g_6.pth')
    torch.save({'iter': 6}, states / '6.state')
    assert resume.network_file(opt, 'g', 6) == str(models / 'net_g_6.pth')
    assert resume.newest_loadable_state(opt, str(states)) == str(states / '6.state')
    assert checkpoints.latest_weights(str(models), 'net_g_2') == str(models / 'net_g_2.safetensors')


def test_convert_to_safetensors_and_back(tmp_path, capsys):
    torch.manual_seed(6)
    sd = IRNeXt(**IRNeXt.card.tiny).state_dict()
    official = tmp_path / 'official.pkl'  # the authors' layout: DataParallel keys under 'model'
    torch.save({'model': {f'module.{k}': v for k, v in sd.items()}, 'epoch': 3}, official)
    out = tmp_path / 'w.safetensors'
    rc, text, err = cli(capsys, 'convert', official, out, '--ema', '--to', 'safetensors')
    assert rc == 0, err
    assert f'wrote: {out} (safetensors)' in text and out.read_bytes()[8:9] == b'{'
    checkpoint = checkpoints.read_checkpoint(str(out))
    assert sorted(checkpoint) == ['network_g', 'params', 'params_ema']
    assert checkpoint['network_g']['type'] == 'IRNeXt'  # identified from the layout, kept in the metadata
    assert IRNeXt.card.tiny.items() <= checkpoint['network_g'].items()
    for key in ('params', 'params_ema'):
        assert set(checkpoint[key]) == set(sd) and all(torch.equal(checkpoint[key][k], v) for k, v in sd.items())
    # a .pth written by convert -> safetensors: identical tensors; and back to .pth
    pth, again, back = tmp_path / 'w.pth', tmp_path / 'again.safetensors', tmp_path / 'back.pth'
    assert cli(capsys, 'convert', official, pth)[0] == 0
    assert cli(capsys, 'convert', pth, again, '--to', 'safetensors')[0] == 0
    rc, text, err = cli(capsys, 'convert', again, back)
    assert rc == 0 and 'safetensors, no code' in text, err
    for file in (again, back):
        state, _ = checkpoints.read_state_dict(str(file), param_key='params')
        assert all(torch.equal(state[k], v) for k, v in sd.items())
    assert torch.load(back, weights_only=True)['network_g'] == checkpoint['network_g']
    rc, _, err = cli(capsys, 'convert', official, tmp_path / 'x.pth', '--to', 'safetensors')
    assert rc == 2 and "name it '" in err and 'x.safetensors' in err


def test_the_option_check_knows_save_format(small_pairs):
    from basicsr_restore.core.errors import OptionError
    from basicsr_restore.host.option_checks import check_options
    opt = dict(tiny_train_options(small_pairs, 'fmt', 4), is_train=True)
    for value in ('pth', 'safetensors'):
        check_options(dict(opt, logger=dict(opt['logger'], save_format=value)))
    with pytest.raises(OptionError, match=r"logger\.save_format: 'onnx'.*pth.*safetensors"):
        check_options(dict(opt, logger=dict(opt['logger'], save_format='onnx')))


# --------------------------------------------------------------------------------------------- stock runner
def test_stock_runner_writes_resumes_and_tests_safetensors(small_pairs, tmp_path):
    """``python -m basicsr.train`` with ``logger.save_format: safetensors``, ``--auto_resume`` from its
    ``.safetensors`` network, then ``python -m basicsr.test`` on ``net_g_latest.safetensors``."""
    def options(total_iter):
        opt = tiny_train_options(small_pairs, 'st', total_iter)
        opt['logger'].update(save_format='safetensors', use_tb_logger=False)
        opt['train']['scheduler']['warmup_iter'] = 1
        return write_options(tmp_path / f'train{total_iter}.yml', opt)

    run(['python', '-m', 'basicsr.train', '-opt', options(2)], cwd=tmp_path)
    models = tmp_path / 'experiments' / 'st' / 'models'
    assert sorted(os.listdir(models)) == ['net_g_2.safetensors', 'net_g_latest.safetensors']
    assert sorted(os.listdir(models.parent / 'training_states')) == ['2.state']
    first = (models / 'net_g_2.safetensors').read_bytes()
    proc = run(['python', '-m', 'basicsr.train', '-opt', options(4), '--auto_resume'], cwd=tmp_path)
    log = '\n'.join(open(p).read() for p in sorted(glob.glob(str(models.parent / '*.log'))))
    assert 'Resuming training from epoch: ' in log and 'iter: 2.' in log
    assert f'Set pretrain_network_g to {models / "net_g_2.safetensors"}' in proc.stdout + proc.stderr + log
    assert re.search(r"Loaded MIRNet from \S+net_g_2\.safetensors \[key 'params'\]", log)
    assert (models / 'net_g_4.safetensors').is_file() and not glob.glob(str(models / '*.pth'))
    assert (models / 'net_g_2.safetensors').read_bytes() == first
    test_opt = {
        'name': 'st_test', 'model_type': 'RestorationModel', 'num_gpu': 0,
        'datasets': {'test_1': {'name': 'small_val', 'type': 'PairedRestorationDataset',
                                'dataroot_gt': str(small_pairs / 'val' / 'gt'),
                                'dataroot_lq': str(small_pairs / 'val' / 'lq')}},
        'network_g': {'type': 'MIRNet', 'n_feat': 8, 'n_RRG': 1, 'n_MSRB': 1},
        'path': {'pretrain_network_g': str(models / 'net_g_latest.safetensors'), 'strict_load_g': True},
        'val': {'save_img': False, 'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0}}},
    }
    run(['python', '-m', 'basicsr.test', '-opt', write_options(tmp_path / 'test.yml', test_opt)], cwd=tmp_path)
    text = '\n'.join(open(p).read() for p in glob.glob(str(tmp_path / 'results' / 'st_test' / '*.log')))
    assert re.search(r"Loaded MIRNet from \S+net_g_latest\.safetensors \[key 'params_ema'\]", text)
    assert re.search(r'# psnr: \d+\.\d+', text)
