"""``python scripts/half_precision.py [NAME ...]``: PSNR (dB) of each network's output with weights and input in fp16
and in bf16 against fp32, on a 64x64 crop of scikit-image's astronaut, with the first preset's configuration and
seeded random weights (BatchNorm statistics kept at their initial values). What the cards' ``half_precision_db``
hold; ``basicsr_restore.spandrel`` sets spandrel's ``supports_half``/``supports_bfloat16`` from it (bar: 45 dB).
Slow on a CPU without native fp16/bf16 (minutes per network)."""
import math
import sys

import numpy as np
import torch


def photo():
    from skimage import data
    img = data.astronaut()[200:264, 200:264].astype(np.float32) / 255
    return torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()


def measure(cls, x):
    from basicsr_restore.core.inference import final_output
    kwargs = next(iter(cls.card.presets.values())).kwargs
    torch.manual_seed(0)
    net = cls(**kwargs).eval()
    out = {}
    with torch.no_grad():
        reference = final_output(net(x)).clamp(0, 1)
        for name, dtype in (('fp16', torch.float16), ('bf16', torch.bfloat16)):
            low = final_output(net.to(dtype)(x.to(dtype))).float().clamp(0, 1)
            net.float()
            mse = ((low - reference) ** 2).mean().item()
            out[name] = round(10 * math.log10(1 / max(mse, 1e-20)), 1)
    return out


def main(names):
    from basicsr_restore.core.registry import network_classes
    x = photo()
    for cls in network_classes():
        if not names or cls.__name__ in names:
            print(cls.__name__, measure(cls, x), flush=True)


if __name__ == '__main__':
    main(sys.argv[1:])
