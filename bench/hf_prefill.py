# HF transformers side of the CPU prefill benchmark (issue 21), outside CI and package.json: the folder written by
# `npx tsx bench/export-bench-model.ts DIR`, fp32 eager, 2 threads, one forward per row (the trunk + the last
# token's hidden state, as the kit's classifier), median tokens/s over interleaved rounds of the 512-token row,
# and the 16-row set one row at a time and as one padded batch. Not run on the project machine (no torch there).
# Usage: python3 bench/hf_prefill.py DIR [--rounds 5] [--threads 2]
import argparse
import json
import statistics
import time

import torch
from transformers import AutoModelForCausalLM

p = argparse.ArgumentParser()
p.add_argument("dir")
p.add_argument("--rounds", type=int, default=5)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads)
model = AutoModelForCausalLM.from_pretrained(a.dir, torch_dtype=torch.float32, attn_implementation="eager").eval()
rows = json.load(open(f"{a.dir}/rows.json"))


def forward(batch):
    S = max(len(r) for r in batch)
    ids = torch.zeros(len(batch), S, dtype=torch.long)
    mask = torch.zeros(len(batch), S, dtype=torch.long)
    for i, r in enumerate(batch):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    t = time.perf_counter()
    with torch.inference_mode():
        h = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        h[torch.arange(len(batch)), mask.sum(1) - 1]
    return time.perf_counter() - t


row = rows["single_512"]
forward(row)  # warm-up
single = [512 / forward(row) for _ in range(a.rounds)]
real = sum(len(r) for r in rows["set_16"])
batch1 = real / sum(forward([r]) for r in rows["set_16"])
padded = real / forward(rows["set_16"])
print(json.dumps({
    "engine": f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, fp32 eager",
    "threads": a.threads,
    "single_512_tokens_per_s": round(statistics.median(single)),
    "set16_batch1_tokens_per_s": round(batch1),
    "set16_padded_tokens_per_s": round(padded),
}))
