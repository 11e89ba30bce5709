# PyTorch worker of the paired CPU prefill benchmark (bench/paired-prefill.ts, issue 21), outside CI and
# package.json: the folder written by `npx tsx bench/export-bench-model.ts DIR`, fp32, eager, `--threads` threads,
# one long-lived process (load cost never timed). JSON lines on stdin / stdout:
#   {"cmd":"run","rows":[[ids...]],"padded":false,"hidden":false,"logits":false}
#     -> {"s":..,"cpu":..,"hidden"?:[[..]],"logits"?:[[..]]}  (s: wall seconds, cpu: process CPU seconds, summed)
# padded=false: one forward per row; padded=true: one right-padded batch of all rows with an attention mask.
# Each forward is the trunk + the last real token's final hidden state (what the kit's classifier computes);
# "hidden" returns that state, "logits" also lm_head of it (for the correctness check against llama.cpp).
# Engine: HF transformers' LlamaModel (attn_implementation="eager") when `transformers` imports, else (--plain, or
# no transformers) a plain-torch eager forward written to mirror transformers 4.45's LlamaModel eager code line by
# line (RMSNorm in fp32, rotate_half rotary, repeat_kv, matmul + softmax attention with an additive causal/padding
# mask, SiLU-gated MLP): the same operators, without the module overhead.
import argparse
import json
import math
import struct
import sys
import time

import torch

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--plain", action="store_true")
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.set_grad_enabled(False)
cfg = json.load(open(f"{a.dir}/config.json"))

hf = None
if not a.plain:
    try:
        from transformers import AutoModelForCausalLM

        hf = AutoModelForCausalLM.from_pretrained(a.dir, torch_dtype=torch.float32, attn_implementation="eager").eval()
        engine = f"transformers {__import__('transformers').__version__} LlamaModel eager"
    except Exception as e:  # noqa: BLE001 - any import / load failure falls back to the plain forward
        print(f"transformers unavailable ({type(e).__name__}: {e}); plain torch eager", file=sys.stderr)


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name, t in header.items():
            if name == "__metadata__":
                continue
            s, e = t["data_offsets"]
            f.seek(base + s)
            buf = bytearray(f.read(e - s))
            out[name] = torch.frombuffer(buf, dtype=torch.float32).reshape(t["shape"])
    return out


if hf is None:
    engine = "plain torch eager (mirrors transformers 4.45 LlamaModel eager; not transformers)"
    W = load_safetensors(f"{a.dir}/model.safetensors")
    H, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg.get("head_dim") or H // nh
    eps = cfg["rms_norm_eps"]
    inv_freq = 1.0 / (cfg.get("rope_theta", 10000) ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))


def rms(x, w):
    v = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(v + eps))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def plain_forward(ids, mask):
    F = torch.nn.functional
    B, S = ids.shape
    x = F.embedding(ids, W["model.embed_tokens.weight"])
    pos = torch.arange(S)[None, :].float()
    freqs = (inv_freq[None, :, None] @ pos[:, None, :]).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[:, None], emb.sin()[:, None]
    minv = torch.finfo(torch.float32).min
    causal = torch.full((S, S), minv).triu(1)[None, None].expand(B, 1, S, S).clone()
    pad = mask[:, None, None, :] == 0
    causal = causal.masked_fill(pad, minv)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        r = x
        h = rms(x, W[p + "input_layernorm.weight"])
        q = F.linear(h, W[p + "self_attn.q_proj.weight"]).view(B, S, nh, D).transpose(1, 2)
        k = F.linear(h, W[p + "self_attn.k_proj.weight"]).view(B, S, nkv, D).transpose(1, 2)
        v = F.linear(h, W[p + "self_attn.v_proj.weight"]).view(B, S, nkv, D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k[:, :, None].expand(B, nkv, nh // nkv, S, D).reshape(B, nh, S, D)
        v = v[:, :, None].expand(B, nkv, nh // nkv, S, D).reshape(B, nh, S, D)
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(D) + causal
        w = F.softmax(w, dim=-1, dtype=torch.float32)
        o = torch.matmul(w, v).transpose(1, 2).contiguous().reshape(B, S, nh * D)
        x = r + F.linear(o, W[p + "self_attn.o_proj.weight"])
        r = x
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        h = F.linear(F.silu(F.linear(h, W[p + "mlp.gate_proj.weight"])) * F.linear(h, W[p + "mlp.up_proj.weight"]),
                     W[p + "mlp.down_proj.weight"])
        x = r + h
    return rms(x, W["model.norm.weight"])


def forward(batch):
    S = max(len(r) for r in batch)
    ids = torch.zeros(len(batch), S, dtype=torch.long)
    mask = torch.zeros(len(batch), S, dtype=torch.long)
    for i, r in enumerate(batch):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    c0 = time.process_time()
    t0 = time.perf_counter()
    with torch.inference_mode():
        h = hf.model(input_ids=ids, attention_mask=mask).last_hidden_state if hf is not None else plain_forward(ids, mask)
        last = h[torch.arange(len(batch)), mask.sum(1) - 1]
    return time.perf_counter() - t0, time.process_time() - c0, last


head = None
print(json.dumps({"ok": True, "engine": f"{engine}, torch {torch.__version__}", "threads": a.threads}), flush=True)
for line in sys.stdin:
    if not line.strip():
        continue
    m = json.loads(line)
    if m["cmd"] == "quit":
        break
    s = cpu = 0.0
    lasts = []
    for b in [m["rows"]] if m.get("padded") else [[r] for r in m["rows"]]:
        ds, dc, last = forward(b)
        s, cpu = s + ds, cpu + dc
        lasts.append(last)
    res = {"s": s, "cpu": cpu}
    if m.get("hidden") or m.get("logits"):
        last = torch.cat(lasts)
        res["hidden"] = last.tolist()
        if m.get("logits"):
            if head is None:
                head = hf.lm_head.weight if hf is not None else W["lm_head.weight"]
            res["logits"] = (last @ head.T).tolist()
    print(json.dumps(res), flush=True)
