"""How far the PiSSA fixture is from the exact SVD, and why no other SVD lands within 1e-5 of it.

Needs Debian bookworm's python3-torch (1.13.1, OpenBLAS) and numpy; not part of CI:
    apt-get install -y python3-torch && /usr/bin/python3 bench/pissa_noise.py

For every projection of hf-reference/gemma2-train/pissa-full it prints, as max |difference| of B@A
(PEFT: Sr = S[:r]/scaling, A = diag(sqrt(Sr)) Vh[:r], B = U[:, :r] diag(sqrt(Sr))):
  torch_here  torch.linalg.svd in float32 on this machine vs the fixture (0 when it is the same build)
  exact       the float64 SVD vs the fixture (what src/train/svd.ts computes, to ~1e-12)
  np32        numpy's float32 SVD (same OpenBLAS LAPACK) vs the exact one: what float32 can achieve
  cond        how far the exact B@A moves when every entry of W moves by a float32 rounding (20 draws)
  ulp         how far torch's own float32 result moves when 5 of W's entries move by one ulp (3 draws)
"""
import json
import os
import struct

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REF = os.path.join(HERE, '..', '..', 'shared', 'fixtures', 'hf-reference')
R, SCALING = 8, 2.0


def load(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    header = json.loads(b[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == '__metadata__':
            continue
        s, e = v['data_offsets']
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype=np.float32).reshape(v['shape'])
    return out


def ba(u, s, vh):
    u, s, vh = (np.asarray(x, dtype=np.float64) for x in (u, s, vh))
    return (u[:, :R] * s[:R]) @ vh[:R] / SCALING


def torch_ba(w):
    return ba(*(t.numpy() for t in torch.linalg.svd(torch.from_numpy(np.array(w, dtype=np.float32)), full_matrices=False)))


def main():
    torch.set_num_threads(1)
    weights = load(os.path.join(REF, 'gemma2-tiny', 'model.safetensors'))
    fixture = load(os.path.join(REF, 'gemma2-train', 'pissa-full.safetensors'))
    rng = np.random.default_rng(0)
    print(f'{"module":40} {"torch_here":>10} {"exact":>10} {"np32":>10} {"cond":>10} {"ulp":>10}')
    worst = {}
    for key in sorted(k for k in fixture if k.endswith('/lora_A')):
        mod = key[: -len('/lora_A')]
        w = weights[mod + '.weight']
        f = fixture[mod + '/lora_B'].astype(np.float64) @ fixture[mod + '/lora_A'].astype(np.float64)
        exact = ba(*np.linalg.svd(w.astype(np.float64), full_matrices=False))
        row = {
            'torch_here': np.abs(torch_ba(w) - f).max(),
            'exact': np.abs(exact - f).max(),
            'np32': np.abs(ba(*np.linalg.svd(w, full_matrices=False)) - exact).max(),
            'cond': max(np.abs(ba(*np.linalg.svd(w + np.abs(w) * rng.standard_normal(w.shape) * 2.0 ** -24, full_matrices=False)) - exact).max() for _ in range(20)),
        }
        ulp = 0.0
        for _ in range(3):
            x = w.copy()
            idx = rng.integers(0, x.size, 5)
            x.flat[idx] = np.nextafter(x.flat[idx], np.float32(np.inf))
            ulp = max(ulp, np.abs(torch_ba(x) - f).max())
        row['ulp'] = ulp
        for k, v in row.items():
            worst[k] = max(worst.get(k, 0.0), v)
        print(f'{mod:40} ' + ' '.join(f'{row[k]:10.2e}' for k in ('torch_here', 'exact', 'np32', 'cond', 'ulp')))
    print(f'{"worst":40} ' + ' '.join(f'{worst[k]:10.2e}' for k in ('torch_here', 'exact', 'np32', 'cond', 'ulp')))


if __name__ == '__main__':
    main()
