"""Speed switches: option parsing and fallbacks, one graph per network, recompilation over image sizes,
activation checkpointing (exact gradients, BatchNorm statistics updated once), autocast numerics."""
import copy

import numpy as np
import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from conftest import batch, built

import basicsr_restore  # noqa: F401
from basicsr_restore.core import checkpoints, speed
from basicsr_restore.core.errors import OptionError
from basicsr_restore.core.inference import restore_any_size
from basicsr_restore.core.registry import network_names
from basicsr_restore.losses.fft_loss import FFTLoss

#: the tiny configuration of every registered network (its card's), and IRNeXt in its other low-pass release
TINY = {name: (name, dict(ARCH_REGISTRY.get(name).card.tiny)) for name in network_names()}
TINY['IRNeXt-local'] = ('IRNeXt', {**TINY['IRNeXt'][1], 'low_pass': 'local'})


def tiny(key, **extra):
    name, kwargs = TINY[key]
    torch.manual_seed(0)
    return checkpoints.build_arch(name, {**kwargs, **extra})


def photo(size=64):
    from skimage import data
    img = data.astronaut()[100:100 + size, 150:150 + size].astype(np.float32) / 255.0
    return torch.from_numpy(img.transpose(2, 0, 1).copy())[None]


# --------------------------------------------------------------------------------------------- options
def test_options_parse_and_every_bad_value_names_the_option_and_the_valid_values():
    s = speed.parse({'amp': 'bf16', 'channels_last': True, 'compile': True, 'checkpoint': ['body.0']})
    assert (s.amp, s.channels_last, s.compile, s.checkpoint) == ('bf16', True, 'default', ['body.0'])
    assert s.describe() == 'bf16+channels_last+compile+checkpoint' and speed.parse(None).describe() == 'fp32'
    assert speed.parse('best') == 'best'
    bad = [({'amp': 'fp8'}, 'speed.amp', 'bf16, fp16, false'),
           ({'compile': 'fast'}, 'speed.compile', 'max-autotune'),
           ({'channels_last': 'yes'}, 'speed.channels_last', 'true or false'),
           ({'checkpoint': 3}, 'speed.checkpoint', 'list of module names'),
           ({'dynamic': 'auto'}, 'speed.dynamic', 'true or false'),
           ({'amp': 'bf16', 'chanels_last': True}, 'chanels_last', 'channels_last'),
           ('fast', 'speed', 'best')]
    for block, option, valid in bad:
        with pytest.raises(OptionError) as err:
            speed.parse(block)
        assert option in str(err.value) and valid in str(err.value)


def test_switches_the_cpu_cannot_honour_are_logged_and_dropped(monkeypatch):
    said = []
    s = speed.resolve(speed.parse({'compile': 'reduce-overhead', 'tf32': True, 'cudnn_benchmark': True}), 'cpu',
                      said.append)
    assert (s.compile, s.tf32, s.cudnn_benchmark) == ('default', False, False)
    assert len(said) == 3 and any('reduce-overhead needs CUDA graphs' in m for m in said)
    monkeypatch.setattr(speed.shutil, 'which', lambda name: None)
    said.clear()
    assert speed.resolve(speed.parse({'compile': 'default'}), 'cpu', said.append).compile is False
    assert 'no C++ compiler' in said[0]
    assert speed.resolve('best', 'cpu', said.append) == speed.preset('cpu')


# ------------------------------------------------------------------------------------------------ best
@pytest.mark.parametrize('native', [True, False])
def test_best_on_the_cpu_is_a_rule_and_its_reason_is_logged_once(monkeypatch, native):
    monkeypatch.setattr(speed, 'native_cpu_bf16', lambda: native)
    monkeypatch.setattr(speed, '_SAID', set())
    said = []
    first, second = speed.resolve('best', 'cpu', said.append), speed.resolve('best', torch.device('cpu'), said.append)
    expected = speed.Speed(amp='bf16' if native else False, channels_last=True)
    assert first == second == expected
    assert len(said) == 1 and said[0].startswith(f'speed best on the cpu: {expected.describe()} (')
    assert ('has native bf16 instructions' if native else 'no native bf16 instructions (AMX or AVX512-BF16)') in said[0]
    from basicsr_restore.commands import bench
    assert bench.candidates(torch.device('cpu'))[0] == bench.speed_mode(expected)  # bench tries the rule's first


def test_native_bf16_is_amx_or_avx512_bf16_not_onednns_avx512_check(monkeypatch):
    import platform
    flags = speed._cpuinfo_flags()
    if platform.machine().lower() in ('x86_64', 'amd64') and flags is not None:  # Linux x86: what the kernel says
        assert speed.native_cpu_bf16() == bool({'amx_bf16', 'avx512_bf16'} & flags)
    # where torch lacks its cpuinfo checks, the flags of /proc/cpuinfo decide; plain AVX-512 is no bf16
    monkeypatch.setattr(platform, 'machine', lambda: 'x86_64')
    monkeypatch.delattr(torch.cpu, '_is_amx_tile_supported', raising=False)
    for given, expected in (({'avx2', 'avx512f', 'avx512bw', 'avx512vl', 'avx512dq'}, ''),
                            ({'avx512f', 'avx512_bf16'}, 'AVX512-BF16'), ({'amx_tile', 'amx_bf16'}, 'AMX')):
        monkeypatch.setattr(speed, '_cpuinfo_flags', lambda given=given: given)
        assert speed.cpu_bf16_instructions() == expected
        assert speed.native_cpu_bf16() == bool(expected)


@pytest.mark.parametrize('native', [True, False])
def test_infer_the_api_and_serve_run_best_as_the_model_does(monkeypatch, capsys, native):
    """One rule: RestorationModel's ``speed: best``, ``infer --speed best``, ``restore(speed='best')`` and
    ``serve --speed best`` resolve to the same switches, and the reason is noted once per process."""
    import argparse

    from basicsr.models import build_model

    from basicsr_restore import api
    from basicsr_restore.commands import infer, serve
    monkeypatch.setattr(speed, 'native_cpu_bf16', lambda: native)
    monkeypatch.setattr(speed, '_SAID', set())
    name, kwargs = TINY['MIRNet']
    model = build_model({'name': 'best', 'model_type': 'RestorationModel', 'num_gpu': 0, 'is_train': False,
                         'dist': False, 'rank': 0, 'world_size': 1, 'network_g': {'type': name, **kwargs},
                         'path': {'pretrain_network_g': None}, 'speed': 'best'})
    assert model.speed == speed.preset('cpu')
    args = argparse.Namespace(speed='best', opt=None, amp=None, compile=None, channels_last=False,
                              cudnn_benchmark=False, tf32=False)
    assert infer.pick_speed(args, None, torch.device('cpu')) == model.speed
    assert infer.pick_speed(args, None, torch.device('cpu')) == model.speed
    assert 'note: speed best' not in capsys.readouterr().err  # the model noted it already in this process
    monkeypatch.setattr(speed, '_SAID', set())
    infer.pick_speed(args, None, torch.device('cpu'))
    infer.pick_speed(args, None, torch.device('cpu'))
    assert capsys.readouterr().err.count('note: speed best on the cpu:') == 1
    net = api.Network(tiny('MIRNet'), name, kwargs, device='cpu')
    assert net.pick_speed('best') == model.speed
    assert serve.Demo(net, serve.Limits(1, '64x64'), 32, 'best').speed == model.speed


# ------------------------------------------------------------------------------------------ one graph
@pytest.mark.parametrize('key', [k for k in TINY if k != 'IRNeXt'])  # IRNeXt-local holds every IRNeXt module
def test_every_network_traces_as_one_graph_in_training_and_in_eval(key):
    """torch._dynamo.explain (no inductor): zero graph breaks, so torch.compile sees each network whole."""
    net = tiny(key)
    x = torch.rand(2, 3, 64, 64)
    for training in (True, False):
        torch._dynamo.reset()
        net.train(training)
        with torch.set_grad_enabled(training):
            report = torch._dynamo.explain(net)(x)
        assert (report.graph_count, report.graph_break_count) == (1, 0), (key, training, report.break_reasons)


class CountingBackend:
    """A torch.compile backend that counts compilations and runs the graph eagerly."""

    def __init__(self):
        self.compiles = 0

    def __call__(self, gm, example_inputs):
        self.compiles += 1
        return gm.forward


def test_restoring_images_of_many_sizes_compiles_one_graph():
    net = tiny('MIRNet').eval()
    backend = CountingBackend()
    torch._dynamo.reset()
    runner = speed.compiled(net, speed.parse({'compile': 'default'}), training=False, backend=backend)
    with torch.no_grad():
        for h, w in [(160, 160), (168, 200), (192, 160), (250, 190), (160, 300)]:
            x = torch.rand(1, 3, h, w)
            assert torch.allclose(restore_any_size(runner, x), restore_any_size(net, x), atol=1e-5)
    assert backend.compiles == 1


def test_inductor_compiled_network_equals_eager():
    """The one inductor compilation of the suite: the tiniest DRCNet (one level), eval mode."""
    net = checkpoints.build_arch('DRCNet', dict(wf=4, depth=1)).eval()
    x = torch.rand(1, 3, 16, 16)
    torch._dynamo.reset()
    runner = speed.compiled(net, speed.parse({'compile': 'default'}), training=False)
    with torch.no_grad():
        got, expected = runner(x), net(x)
    for a, b in zip(got, expected):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    assert not any(k.startswith('_orig_mod') for k in net.state_dict())


# ---------------------------------------------------------------------------------- checkpointing
@pytest.mark.parametrize('key', ['IRNeXt', 'DRCNet', 'EIRN', 'MIRNet'])
def test_activation_checkpointing_gives_the_same_gradients_and_batch_norm_statistics(key):
    plain = tiny(key).double().train()
    ckpt = copy.deepcopy(plain)
    blocks = speed.enable_checkpointing(ckpt, True)
    assert blocks and list(ckpt.state_dict()) == list(plain.state_dict())
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    for net in (plain, ckpt):
        out = net(x)
        sum(o.square().mean() for o in (out if isinstance(out, list) else [out])).backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        if a.grad is None:
            assert b.grad is None, name
            continue
        assert torch.allclose(a.grad, b.grad, rtol=1e-10, atol=1e-12), name
    for (name, a), b in zip(plain.named_buffers(), ckpt.buffers()):  # BatchNorm updated once, not twice
        assert torch.equal(a, b), name
    ema = copy.deepcopy(ckpt).eval()  # the EMA copy runs plainly in eval mode
    with torch.no_grad():
        assert torch.allclose(ema(x)[-1] if key != 'MIRNet' else ema(x), plain.eval()(x)[-1] if key != 'MIRNet'
                              else plain.eval()(x))


def test_checkpointing_names_bad_module_names():
    with pytest.raises(OptionError, match=r"no module named body\.9; e\.g\. body\.0"):
        speed.enable_checkpointing(tiny('MIRNet'), ['body.9'])


# ------------------------------------------------------------------------------------------ autocast
@pytest.mark.parametrize('key', list(TINY))
def test_bf16_autocast_output_stays_within_45_db_of_fp32(key):
    net = tiny(key).eval()
    x = photo()
    with torch.no_grad():
        full = restore_any_size(net, x).clamp(0, 1)
        with speed.autocast(speed.parse({'amp': 'bf16'}), 'cpu'):
            low = restore_any_size(net, x).float().clamp(0, 1)
    mse = (full - low).square().mean().item()
    assert 0 < mse, 'bf16 changed nothing: autocast was not applied'
    assert 10 * np.log10(1 / mse) >= 45


def test_fft_loss_runs_in_float32_inside_autocast():
    pred, target = torch.rand(2, 3, 24, 20), torch.rand(2, 3, 24, 20)
    expected = FFTLoss()(pred, target)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = FFTLoss()(pred.bfloat16(), target)
    assert got.dtype == torch.float32
    assert torch.allclose(got, FFTLoss()(pred.bfloat16().float(), target))
    assert abs(got.item() - expected.item()) / expected.item() < 1e-2


# ------------------------------------------------------------------------------------- in the model
def test_training_with_fp16_channels_last_and_checkpointing_saves_plain_fp32_official_keys(tmp_path, small_pairs):
    model = built(tmp_path, small_pairs, speed={'amp': 'fp16', 'channels_last': True, 'checkpoint': True,
                                                'tf32': True})
    assert model.speed.describe() == 'fp16+channels_last+checkpoint'  # tf32 dropped on the CPU
    assert model.scaler is not None and model.scaler.get_scale() == 2.0 ** 16
    bare = model.get_bare_model(model.net_g)
    assert bare.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    for i in range(3):
        model.feed_data(batch(i, size=32))
        model.optimize_parameters(i + 1)
        assert all(np.isfinite(v) for v in model.log_dict.values())
    assert model.guard.skipped == 0
    model.save(0, 3)
    saved = torch.load(tmp_path / 'experiments' / 'guard' / 'models' / 'net_g_3.pth', weights_only=True)
    plain = checkpoints.build_arch('MIRNet', dict(n_feat=8, n_RRG=1, n_MSRB=1)).state_dict()
    for key in ('params', 'params_ema'):
        assert list(saved[key]) == list(plain)
        assert all(v.dtype == plain[k].dtype for k, v in saved[key].items())
    state = torch.load(tmp_path / 'experiments' / 'guard' / 'training_states' / '3.state', weights_only=False)
    assert state['scaler']['scale'] == model.scaler.get_scale()
    model.feed_data(batch(9, size=36))  # validation: padded, autocast, back to float32
    model.test()
    assert model.output.dtype == torch.float32 and model.output.shape[-2:] == (36, 36)


def test_fp16_overflow_is_the_scalers_business_not_a_skipped_step(tmp_path, small_pairs):
    model = built(tmp_path, small_pairs, speed={'amp': 'fp16'})
    model.scaler = torch.amp.GradScaler('cpu', init_scale=2.0 ** 120)  # the scaled loss overflows float16
    before = copy.deepcopy(model.get_bare_model(model.net_g).state_dict())
    model.feed_data(batch(0, size=32))
    model.optimize_parameters(1)
    assert model.scaler.get_scale() < 2.0 ** 120 and model.guard.skipped == 0
    after = model.get_bare_model(model.net_g).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
