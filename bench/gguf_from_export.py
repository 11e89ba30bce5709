# Converts the folder written by `npx tsx bench/export-bench-model.ts DIR` (an HF LlamaForCausalLM: F32
# safetensors, config.json, the Llama-2 tokenizer.json) into llama-arch GGUF files for the paired CPU prefill
# benchmark (bench/paired-prefill.ts, issue 21), outside CI and package.json. It does what llama.cpp's
# convert_hf_to_gguf.py does for LlamaForCausalLM (the metadata keys, the rotary row permutation of q_proj / k_proj,
# the tensor names, output.weight = lm_head, a "llama" vocabulary from tokenizer.json) with a small GGUF v3 writer
# of its own and numpy quantizers that follow ggml's reference ones (Q8_0, Q4_0: blocks of 32 with an f16 scale;
# BF16: round to nearest even), so it needs numpy only (no torch, no gguf-py, no llama-quantize).
# Norms stay F32 (as convert_hf_to_gguf and llama-quantize keep them); every 2-D weight, the token embedding and
# output.weight included, takes the file's type (llama-quantize would give output.weight Q6_K in a Q4_0 file: it
# is one token's logits here, outside the timed trunk's cost).
# Usage: python3 bench/gguf_from_export.py DIR OUT_DIR [--types f32,q8_0,q4_0,bf16]
#   -> OUT_DIR/bench-f32.gguf, bench-q8_0.gguf, bench-q4_0.gguf, bench-bf16.gguf
import argparse
import json
import os
import struct
import sys

import numpy as np

GGML = {"f32": 0, "q4_0": 2, "q8_0": 8, "bf16": 30}
FILE_TYPE = {"f32": 0, "q4_0": 2, "q8_0": 7, "bf16": 32}  # llama_ftype: ALL_F32, MOSTLY_Q4_0, MOSTLY_Q8_0, MOSTLY_BF16
ALIGN = 32


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", (name, t["dtype"])
        a, b = t["data_offsets"]
        out[name] = mm[8 + n + a : 8 + n + b].view(np.float32).reshape(t["shape"])
    return out


def permute(w, n_head, n_head_kv):
    # convert_hf_to_gguf.LlamaModel.permute: HF's rotate_half layout -> ggml's interleaved rope pairs
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def round_away(x):
    a = np.abs(x)
    f = np.floor(a)
    return np.sign(x) * (f + np.floor(2 * (a - f)))


def q8_0(w):
    blocks = w.reshape(-1, 32).astype(np.float32)
    d = np.abs(blocks).max(axis=1, keepdims=True) / 127
    with np.errstate(divide="ignore"):
        idv = np.where(d == 0, 0, 1 / d)
    qs = round_away(blocks * idv).astype(np.int8).view(np.uint8)
    return np.concatenate([d.astype(np.float16).view(np.uint8), qs], axis=1)


def q4_0(w):
    blocks = w.reshape(-1, 32).astype(np.float32)
    imax = np.abs(blocks).argmax(axis=-1)[:, None]
    mx = np.take_along_axis(blocks, imax, axis=-1)
    d = mx / -8
    with np.errstate(divide="ignore"):
        idv = np.where(d == 0, 0, 1 / d)
    qs = np.trunc(blocks.astype(np.float64) * idv.astype(np.float64) + 8.5).astype(np.float32)
    qs = qs.astype(np.uint8).clip(0, 15).reshape(-1, 2, 16)
    qs = qs[:, 0, :] | (qs[:, 1, :] << np.uint8(4))
    return np.concatenate([d.astype(np.float16).view(np.uint8), qs], axis=1)


def bf16(w):
    n = np.ascontiguousarray(w, dtype=np.float32).view(np.uint32).astype(np.uint64)
    n = (n + (0x7FFF + ((n >> 16) & 1))) >> 16
    return n.astype(np.uint16)


def encode(w, kind):
    if kind == "f32" or w.ndim == 1:
        return np.ascontiguousarray(w, dtype=np.float32), GGML["f32"]
    if kind == "bf16":
        return bf16(w), GGML["bf16"]
    rows = []
    for i in range(0, w.shape[0], 1024):  # bounded temporaries
        rows.append((q8_0 if kind == "q8_0" else q4_0)(np.asarray(w[i : i + 1024])))
    return np.concatenate(rows), GGML[kind]


class Writer:
    """GGUF v3: header, key/values, tensor infos, data aligned to 32 bytes."""

    def __init__(self):
        self.kv = []
        self.tensors = []

    @staticmethod
    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b

    def add(self, key, vtype, value):
        enc = {
            "u32": lambda v: struct.pack("<I", 4) + struct.pack("<I", v),
            "i32": lambda v: struct.pack("<I", 5) + struct.pack("<i", v),
            "f32": lambda v: struct.pack("<I", 6) + struct.pack("<f", v),
            "bool": lambda v: struct.pack("<I", 7) + struct.pack("<?", v),
            "str": lambda v: struct.pack("<I", 8) + self.s(v),
        }
        if vtype == "str[]":
            body = struct.pack("<IIQ", 9, 8, len(value)) + b"".join(self.s(v) for v in value)
        elif vtype == "f32[]":
            body = struct.pack("<IIQ", 9, 6, len(value)) + np.asarray(value, dtype="<f4").tobytes()
        elif vtype == "i32[]":
            body = struct.pack("<IIQ", 9, 5, len(value)) + np.asarray(value, dtype="<i4").tobytes()
        else:
            body = enc[vtype](value)
        self.kv.append(self.s(key) + body)

    def tensor(self, name, shape, data, gtype):
        self.tensors.append((name, shape, data, gtype))

    def write(self, path):
        infos = []
        offset = 0
        for name, shape, data, gtype in self.tensors:
            dims = list(reversed(shape))  # ggml ne[0] is the innermost (row) dimension
            infos.append(
                self.s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
                + struct.pack("<IQ", gtype, offset)
            )
            offset += -(-data.nbytes // ALIGN) * ALIGN
        with open(path + ".part", "wb") as f:
            f.write(b"GGUF" + struct.pack("<IQQ", 3, len(self.tensors), len(self.kv)))
            for k in self.kv:
                f.write(k)
            for i in infos:
                f.write(i)
            f.write(b"\0" * (-f.tell() % ALIGN))
            for _, _, data, _ in self.tensors:
                f.write(data.tobytes())
                f.write(b"\0" * (-data.nbytes % ALIGN))
        os.replace(path + ".part", path)


def vocabulary(src):
    tok = json.load(open(os.path.join(src, "tokenizer.json")))
    vocab = tok["model"]["vocab"]
    n = len(vocab)
    tokens = [""] * n
    for t, i in vocab.items():
        tokens[i] = t
    special = {a["id"] for a in tok.get("added_tokens", []) if a.get("special")}
    types = []
    for i, t in enumerate(tokens):
        if t == "<unk>":
            types.append(2)  # UNKNOWN
        elif i in special:
            types.append(3)  # CONTROL
        elif len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
            types.append(6)  # BYTE
        else:
            types.append(1)  # NORMAL
    # scores only order BPE merges in llama.cpp's SPM tokenizer; the benchmark feeds token ids, never text
    return tokens, [-float(i) for i in range(n)], types


def convert(src, out, kinds):
    cfg = json.load(open(os.path.join(src, "config.json")))
    w = read_safetensors(os.path.join(src, "model.safetensors"))
    nh, nkv, L = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["num_hidden_layers"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // nh
    tokens, scores, types = vocabulary(src)
    assert len(tokens) == cfg["vocab_size"]
    names = [("token_embd.weight", "model.embed_tokens.weight", None)]
    for i in range(L):
        p = f"model.layers.{i}."
        names += [
            (f"blk.{i}.attn_norm.weight", p + "input_layernorm.weight", None),
            (f"blk.{i}.attn_q.weight", p + "self_attn.q_proj.weight", "q"),
            (f"blk.{i}.attn_k.weight", p + "self_attn.k_proj.weight", "k"),
            (f"blk.{i}.attn_v.weight", p + "self_attn.v_proj.weight", None),
            (f"blk.{i}.attn_output.weight", p + "self_attn.o_proj.weight", None),
            (f"blk.{i}.ffn_norm.weight", p + "post_attention_layernorm.weight", None),
            (f"blk.{i}.ffn_gate.weight", p + "mlp.gate_proj.weight", None),
            (f"blk.{i}.ffn_up.weight", p + "mlp.up_proj.weight", None),
            (f"blk.{i}.ffn_down.weight", p + "mlp.down_proj.weight", None),
        ]
    names += [("output_norm.weight", "model.norm.weight", None), ("output.weight", "lm_head.weight", None)]
    os.makedirs(out, exist_ok=True)
    for kind in kinds:
        g = Writer()
        g.add("general.architecture", "str", "llama")
        g.add("general.name", "str", "arenakit issue-21 bench model")
        g.add("general.file_type", "u32", FILE_TYPE[kind])
        g.add("general.quantization_version", "u32", 2)
        g.add("general.alignment", "u32", ALIGN)
        g.add("llama.vocab_size", "u32", cfg["vocab_size"])
        g.add("llama.context_length", "u32", cfg["max_position_embeddings"])
        g.add("llama.embedding_length", "u32", cfg["hidden_size"])
        g.add("llama.block_count", "u32", L)
        g.add("llama.feed_forward_length", "u32", cfg["intermediate_size"])
        g.add("llama.rope.dimension_count", "u32", hd)
        g.add("llama.rope.freq_base", "f32", float(cfg.get("rope_theta", 10000)))
        g.add("llama.attention.head_count", "u32", nh)
        g.add("llama.attention.head_count_kv", "u32", nkv)
        g.add("llama.attention.key_length", "u32", hd)
        g.add("llama.attention.value_length", "u32", hd)
        g.add("llama.attention.layer_norm_rms_epsilon", "f32", float(cfg["rms_norm_eps"]))
        g.add("tokenizer.ggml.model", "str", "llama")
        g.add("tokenizer.ggml.pre", "str", "default")
        g.add("tokenizer.ggml.tokens", "str[]", tokens)
        g.add("tokenizer.ggml.scores", "f32[]", scores)
        g.add("tokenizer.ggml.token_type", "i32[]", types)
        g.add("tokenizer.ggml.bos_token_id", "u32", cfg.get("bos_token_id", 1))
        g.add("tokenizer.ggml.eos_token_id", "u32", cfg.get("eos_token_id", 2))
        g.add("tokenizer.ggml.unknown_token_id", "u32", 0)
        g.add("tokenizer.ggml.padding_token_id", "u32", cfg.get("pad_token_id", 0))
        g.add("tokenizer.ggml.add_bos_token", "bool", True)
        g.add("tokenizer.ggml.add_eos_token", "bool", False)
        for gname, hname, perm in names:
            t = w[hname]
            if perm == "q":
                t = permute(t, nh, nh)
            elif perm == "k":
                t = permute(t, nh, nkv)
            data, gtype = encode(t, kind)
            g.tensor(gname, list(t.shape), data, gtype)
        path = os.path.join(out, f"bench-{kind}.gguf")
        g.write(path)
        print(f"wrote {path} ({os.path.getsize(path) / 1e6:.0f} MB)", file=sys.stderr)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--types", default="f32,q8_0,q4_0,bf16")
    a = ap.parse_args()
    convert(a.src, a.out, a.types.split(","))
