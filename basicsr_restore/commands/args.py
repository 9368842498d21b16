"""What the verbs share on their command lines: ``--arch-args`` values, and the network an ``-opt`` file or
``--arch``/``--arch-args`` names."""
import json

import yaml

from basicsr_restore.core.option_files import read_option_file


def parse_arch_args(tokens, where='--arch-args'):
    """``['num_res=14', 'low_pass=local']`` or ``['{"num_res": 14}']`` -> dict (values parsed as YAML)."""
    kwargs = {}
    for token in tokens or []:
        token = token.strip()
        if token.startswith('{'):
            try:
                value = json.loads(token)
            except json.JSONDecodeError as exc:
                raise ValueError(f'{where}: {token!r} is not valid JSON ({exc}).') from None
            if not isinstance(value, dict):
                raise ValueError(f'{where}: {token!r} must be a JSON object.')
            kwargs.update(value)
        elif '=' in token:
            key, text = token.split('=', 1)
            try:
                kwargs[key.strip()] = yaml.safe_load(text) if text.strip() else ''
            except yaml.YAMLError:
                kwargs[key.strip()] = text
        else:
            raise ValueError(f"{where}: {token!r} is neither key=value nor a JSON object (e.g. num_res=14 or "
                             '\'{"num_res": 14}\').')
    return kwargs


def load_options(path):
    """A BasicSR option file as a dict (only the parts read here: ``network_g``, ``path``)."""
    opt = read_option_file(path)
    if not isinstance(opt.get('network_g'), dict) or 'type' not in opt['network_g']:
        raise ValueError(f"-opt '{path}' has no network_g with a type (e.g. network_g: {{type: IRNeXt}}).")
    return opt


def network_spec(opt_path=None, arch=None, arch_args=None, weights=None):
    """``(name, kwargs, opt)`` from an option file's ``network_g`` or from ``--arch``/``--arch-args``; with only
    ``weights``, ``(None, {}, None)``: the checkpoint names its network (see :func:`open_network`)."""
    if opt_path and arch:
        raise ValueError('give either -opt or --arch, not both (the option file names the network in network_g).')
    if opt_path:
        opt = load_options(opt_path)
        kwargs = {k: v for k, v in opt['network_g'].items() if k != 'type'}
        kwargs.update(parse_arch_args(arch_args))
        return opt['network_g']['type'], kwargs, opt
    if arch:
        return arch, parse_arch_args(arch_args), None
    if arch_args:
        raise ValueError('--arch-args needs --arch NAME (the network they belong to).')
    if weights:
        return None, {}, None  # the network is the one the checkpoint records or its key layout shows
    raise ValueError('name the weights: --weights FILE (the network is found from the file), -opt OPTIONS.yml (its '
                     'network_g and path.pretrain_network_g), or --arch NAME --weights FILE '
                     '[--arch-args key=value ...].')
