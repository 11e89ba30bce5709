// The base checkpoint's config.json as the trainer reads it (`npm run fuzz -- --only train-base`, issue 19
// item 7): the gemma2-tiny fixture's config.json, broken (junk values, dropped keys, layer counts, sizes,
// pad id, labels, architectures, bytes), beside the fixture's real model.safetensors, then train's
// loadBase (src/train/base.ts: the head, the family parser and the checks shared with import,
// src/weights/checks.ts). Allowed: a base that loads (its config's shapes then match the checkpoint), or
// a named error naming the case folder or its config.json.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadBase } from '../src/train/base';
import { DEFAULT_TRAIN } from '../src/train/run';
import { expectedShapes } from '../src/weights/checks';
import { openCheckpoint } from '../src/weights/safetensors';
import type { Rng } from '../src/util/rng';
import { ALLOWED_ERRORS, caseRng, int, pick, SLOW_SECONDS, type FuzzOptions, type FuzzResult } from './fuzz';

const FIXTURE = resolve(__dirname, '..', '..', 'shared', 'fixtures', 'hf-reference', 'gemma2-tiny');
const JUNK: unknown[] = [null, -1, 0, 0.5, 1e308, 2 ** 53 + 2, '', 'x', '64', [], [1], {}, { a: 1 }, true, 'é\ud800'];

const MUTATIONS: Record<string, (j: Record<string, unknown>, r: Rng) => void> = {
  'junk value': (j, r) => (j[pick(r, Object.keys(j))] = pick(r, JUNK)),
  'drop key': (j, r) => delete j[pick(r, Object.keys(j))],
  layers: (j, r) => (j.num_hidden_layers = pick(r, [0, 1, 3, 5, 100, -4, 2.5])),
  sizes: (j, r) =>
    (j[pick(r, ['hidden_size', 'intermediate_size', 'head_dim', 'num_attention_heads', 'num_key_value_heads'])] = pick(
      r,
      [1, 8, 32, 48, 96, 128, 0, 7],
    )),
  vocabulary: (j, r) => (j.vocab_size = pick(r, [1, 256, 500, 511, 513, 1024, 0])),
  'pad id': (j, r) => (j.pad_token_id = pick(r, [-1, 511, 512, 1e9, null, 0.5])),
  labels: (j, r) =>
    (j.id2label = pick(r, [{ 0: 'a' }, { 0: 'winner_model_a', 1: 'winner_model_b' }, [], null, { 0: 1, 1: 2, 2: 3 }])),
  architectures: (j, r) =>
    (j.architectures = pick(r, [['Gemma2ForCausalLM'], ['LlamaForSequenceClassification'], ['Nope'], [], 'Gemma2'])),
  'rope / window': (j, r) =>
    (j[pick(r, ['rope_theta', 'sliding_window', 'rope_scaling'])] = pick(r, [0, -1, { type: 'yarn' }, 1e9])),
  softcaps: (j, r) =>
    (j[pick(r, ['attn_logit_softcapping', 'final_logit_softcapping', 'query_pre_attn_scalar'])] = pick(r, JUNK)),
};

export async function fuzzTrainBase(opts: FuzzOptions): Promise<FuzzResult> {
  const text = readFileSync(join(FIXTURE, 'config.json'), 'utf8');
  const ck = openCheckpoint(FIXTURE);
  const root = mkdtempSync(join(tmpdir(), 'arenakit-fuzz-train-base-'));
  const dir = join(root, 'case');
  mkdirSync(dir);
  const allowed = ALLOWED_ERRORS['train-base'];
  const res: FuzzResult = {
    target: 'train-base',
    seed: opts.seed,
    cases: 0,
    seconds: 0,
    ok: 0,
    errors: {},
    mutations: {},
    failures: [],
    skipped: [],
    slow: [],
  };
  const t0 = Date.now();
  const [from, to] = opts.only !== undefined ? [opts.only, opts.only + 1] : [0, opts.cases];
  try {
    for (let i = from; i < to && (Date.now() - t0) / 1000 <= opts.seconds; i++) {
      const r = caseRng(opts.seed, i);
      const j = JSON.parse(text) as Record<string, unknown>;
      const mutations: string[] = [];
      for (let k = 1 + int(r, 3); k > 0; k--) {
        const m = pick(r, Object.keys(MUTATIONS));
        MUTATIONS[m](j, r);
        mutations.push(m);
      }
      let bytes = JSON.stringify(j);
      if (r.next() < 0.1) {
        bytes = pick(r, [bytes.slice(0, int(r, bytes.length)), 'null', '[]', '', '\uFEFF' + bytes]);
        mutations.push('bytes');
      }
      for (const m of mutations) res.mutations[m] = (res.mutations[m] ?? 0) + 1;
      writeFileSync(join(dir, 'config.json'), bytes);
      res.cases++;
      const started = Date.now();
      try {
        const numLabels = r.next() < 0.2 ? pick(r, [2, 3]) : undefined;
        const base = loadBase(dir, ck, {
          ...DEFAULT_TRAIN,
          base: dir,
          out: join(root, 'out'),
          numLabels,
          log: () => {},
        });
        // invariant: what loaded fits the checkpoint, tensor for tensor
        for (const [n, s] of expectedShapes(base.config))
          if (ck.names.includes(n) && !base.extra.has(n) && ck.info(n).shape.join() !== s.join())
            throw new Error(`invariant: ${n} is [${ck.info(n).shape}] but the loaded config needs [${s}]`);
        res.ok++;
      } catch (e) {
        const err = e as Error;
        if (allowed.includes(err?.name) && err.message.includes(dir))
          res.errors[err.name] = (res.errors[err.name] ?? 0) + 1;
        else {
          const keep = join(root, `failure-${i}.json`);
          writeFileSync(keep, bytes);
          res.failures.push({
            case: i,
            mutations,
            error: `${err?.name}: ${String(err?.message).slice(0, 300)}\n${err?.stack?.split('\n').slice(1, 4).join('\n')}`,
            file: keep,
          });
        }
      }
      const took = (Date.now() - started) / 1000;
      if (took > SLOW_SECONDS) res.slow.push({ case: i, seconds: took });
    }
  } finally {
    ck.close();
  }
  res.seconds = (Date.now() - t0) / 1000;
  if (!res.failures.length) rmSync(root, { recursive: true, force: true });
  return res;
}
