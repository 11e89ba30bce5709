"""PyTorch baseline for `--only train` (Debian's python3-torch, installed only for this benchmark).

The same LoRA training step as the TypeScript trainer on the same shapes: a Gemma-2 classifier in eager
PyTorch (sandwich norms, (1+w) RMSNorm, GQA, rotate-half rotary, soft-capped scores, sliding window on
even layers, gelu-tanh MLP, last-token pooling), LoRA A/B on the targets + a trainable score head, mean
CE, backward, clip_grad_norm_, AdamW. Random weights; prints seconds per optimizer step as JSON.

usage: /usr/bin/python3 bench/train_torch.py HIDDEN INTER HEADS KV HEAD_DIM LAYERS BATCH SEQ R TARGETS THREADS
"""
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

H, I, NH, NKV, D, L, B, S, R = (int(x) for x in sys.argv[1:10])
TARGETS = sys.argv[10].split(",")
torch.set_num_threads(int(sys.argv[11]))
torch.manual_seed(0)
V, WINDOW, CAP = 512, 4096 if H > 1000 else 8, 50.0


class Lora(torch.nn.Module):
    def __init__(self, i, o, lora):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(o, i) * 0.02, requires_grad=False)
        self.a = torch.nn.Parameter(torch.empty(R, i).uniform_(-1 / math.sqrt(i), 1 / math.sqrt(i))) if lora else None
        self.b = torch.nn.Parameter(torch.zeros(o, R)) if lora else None

    def forward(self, x):
        y = x @ self.w.T
        return y if self.a is None else y + (x @ self.a.T) @ self.b.T * 2.0


def norm(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * (1 + w)


class Layer(torch.nn.Module):
    def __init__(self, sliding):
        super().__init__()
        lin = lambda n, i, o: Lora(i, o, n in TARGETS)
        self.q, self.k, self.v, self.o = lin("q_proj", H, NH * D), lin("k_proj", H, NKV * D), lin("v_proj", H, NKV * D), lin("o_proj", NH * D, H)
        self.g, self.u, self.d = lin("gate_proj", H, I), lin("up_proj", H, I), lin("down_proj", I, H)
        self.n = [torch.randn(H) * 0.1 for _ in range(4)]
        self.sliding = sliding

    def forward(self, x, cos, sin, mask):
        h = norm(x, self.n[0])
        q = self.q(h).view(B, S, NH, D).transpose(1, 2)
        k = self.k(h).view(B, S, NKV, D).transpose(1, 2).repeat_interleave(NH // NKV, 1)
        v = self.v(h).view(B, S, NKV, D).transpose(1, 2).repeat_interleave(NH // NKV, 1)
        rot = lambda t: torch.cat((-t[..., D // 2:], t[..., : D // 2]), -1)
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        s = CAP * torch.tanh((q @ k.transpose(2, 3)) * 256 ** -0.5 / CAP) + mask[self.sliding]
        a = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, S, NH * D)
        x = x + norm(self.o(a), self.n[1])
        h = norm(x, self.n[2])
        return x + norm(self.d(F.gelu(self.g(h), approximate="tanh") * self.u(h)), self.n[3])


emb = torch.randn(V, H) * 0.5
layers = torch.nn.ModuleList([Layer(i % 2 == 0) for i in range(L)])
head = torch.nn.Parameter(torch.randn(3, H) * 0.02)
final = torch.randn(H) * 0.1
inv = 1.0 / (10000 ** (torch.arange(0, D, 2).float() / D))
ang = torch.arange(S).float()[:, None] * inv[None]
cos, sin = torch.cat((ang, ang), -1).cos(), torch.cat((ang, ang), -1).sin()
i, j = torch.arange(S)[:, None], torch.arange(S)[None]
neg = torch.finfo(torch.float32).min
mask = {False: torch.where(j <= i, 0.0, neg), True: torch.where((j <= i) & (j > i - WINDOW), 0.0, neg)}
ids = torch.randint(1, V, (B, S))
labels = torch.arange(B) % 3
params = [p for p in layers.parameters() if p.requires_grad] + [head]
opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)


def step():
    x = emb[ids] * math.sqrt(H)
    for layer in layers:
        x = layer(x, cos, sin, mask)
    logits = norm(x, final)[:, -1] @ head.T
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad()


step()
n = 3
t = time.time()
for _ in range(n):
    step()
per = (time.time() - t) / n
print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "seconds_per_step": round(per, 4), "steps_per_s": round(1 / per, 3)}))
