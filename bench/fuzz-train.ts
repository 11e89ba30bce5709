// The trainer's inputs for `npm run fuzz` (issue 19 item 7): `--tokenized` JSONL rows, adapter_config.json
// (continued training, through the same checks as import) and the --resume checkpoint (checkpoint.json +
// state.safetensors). Seeded like bench/fuzz.ts (case i draws from its own stream; `--case N` replays
// it). Allowed outcome of a case: the input reads (and keeps the invariants below), or a named error
// (ALLOWED_ERRORS) whose message names the file or folder of the case. Anything else, including a
// TypeError / RangeError / SyntaxError, is a failure, kept on disk and printed.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { readTokenized } from '../src/train/data';
import { loadCheckpoint, saveCheckpoint } from '../src/train/checkpoint';
import { adamState } from '../src/train/optim';
import { adapterSettings, checkParams, defaultInit, planLora, type Params } from '../src/train/lora';
import { checkAdapter, openAdapter } from '../src/weights/peft';
import { openCheckpoint } from '../src/weights/safetensors';
import { parseHfConfig } from '../src/weights/hfconfig';
import type { ModelConfig } from '../src/types';
import type { FuzzOptions, FuzzResult } from './fuzz';
import { ALLOWED_ERRORS, caseRng, int, pick, SLOW_SECONDS, stMutate } from './fuzz';
import type { Rng } from '../src/util/rng';

const TRAIN_ALLOWED = {
  jsonl: ALLOWED_ERRORS.jsonl,
  'adapter-config': ALLOWED_ERRORS['adapter-config'],
  'train-checkpoint': ALLOWED_ERRORS['train-checkpoint'],
};

const FIXTURE = resolve(__dirname, '..', '..', 'shared', 'fixtures', 'hf-reference', 'gemma2-tiny');
const VOCAB = 512;

/** Runs cases 0..cases-1 (or --case N): `write` puts case i under `dir`, `check` reads it. */
async function runTrainCases(
  target: keyof typeof TRAIN_ALLOWED,
  opts: FuzzOptions,
  prepare: (dir: string) => void,
  write: (dir: string, r: Rng, i: number) => string[],
  check: (dir: string) => unknown,
): Promise<FuzzResult> {
  const root = mkdtempSync(join(tmpdir(), `arenakit-fuzz-${target}-`));
  const dir = join(root, 'case');
  mkdirSync(dir);
  prepare(dir);
  const res: FuzzResult = {
    target,
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
  for (let i = from; i < to && (Date.now() - t0) / 1000 <= opts.seconds; i++) {
    const mutations = write(dir, caseRng(opts.seed, i), i);
    for (const m of mutations) res.mutations[m] = (res.mutations[m] ?? 0) + 1;
    res.cases++;
    const started = Date.now();
    try {
      await check(dir);
      res.ok++;
    } catch (e) {
      const err = e as Error;
      if (TRAIN_ALLOWED[target].includes(err?.name) && err.message.includes(dir))
        res.errors[err.name] = (res.errors[err.name] ?? 0) + 1;
      else {
        const keep = join(root, `failure-${i}`);
        rmSync(keep, { recursive: true, force: true });
        mkdirSync(keep);
        for (const f of ['rows.jsonl', 'adapter_config.json', 'checkpoint.json', 'state.safetensors'])
          try {
            copyFileSync(join(dir, f), join(keep, f));
          } catch {
            /* not part of this kind */
          }
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
  res.seconds = (Date.now() - t0) / 1000;
  if (!res.failures.length) rmSync(root, { recursive: true, force: true });
  return res;
}

// ---------------------------------------------------------------- JSON values

const JUNK: unknown[] = [
  null,
  -1,
  0,
  0.5,
  1e308,
  -1e308,
  2 ** 53 + 2,
  '',
  'x',
  '7',
  [],
  [1],
  {},
  { a: 1 },
  true,
  false,
  'é\u0000\ud800',
  'x'.repeat(100_000),
];
const junk = (r: Rng): unknown => pick(r, JUNK);

// ---------------------------------------------------------------- JSONL rows

const row = (r: Rng) => ({ input_ids: Array.from({ length: 1 + int(r, 40) }, () => int(r, VOCAB)), label: int(r, 3) });

const LINE_MUTATIONS: Record<string, (lines: string[], r: Rng) => void> = {
  'null line': (l, r) => l.splice(int(r, l.length + 1), 0, 'null'),
  'array line': (l, r) => l.splice(int(r, l.length + 1), 0, '[1,2,3]'),
  'scalar line': (l, r) => l.splice(int(r, l.length + 1), 0, pick(r, ['1', '"row"', 'true', '-0'])),
  'not JSON': (l, r) => l.splice(int(r, l.length + 1), 0, pick(r, ['{', '{"input_ids": [1,2', 'input_ids', '{]'])),
  'junk label': (l, r) => (l[int(r, l.length)] = JSON.stringify({ ...row(r), label: junk(r) })),
  'label out of range': (l, r) =>
    (l[int(r, l.length)] = JSON.stringify({ ...row(r), label: pick(r, [3, -1, 99, 1.5]) })),
  'no label': (l, r) => (l[int(r, l.length)] = JSON.stringify({ input_ids: row(r).input_ids })),
  'junk ids': (l, r) => (l[int(r, l.length)] = JSON.stringify({ input_ids: junk(r), label: 0 })),
  'junk id': (l, r) => {
    const x = row(r);
    x.input_ids[int(r, x.input_ids.length)] = junk(r) as number;
    l[int(r, l.length)] = JSON.stringify(x);
  },
  'id past vocab': (l, r) => (l[int(r, l.length)] = JSON.stringify({ input_ids: [1, VOCAB + int(r, 5)], label: 1 })),
  'empty ids': (l, r) => (l[int(r, l.length)] = JSON.stringify({ input_ids: [], label: 1 })),
  'long row': (l, r) =>
    (l[int(r, l.length)] = JSON.stringify({
      input_ids: Array.from({ length: 20_000 + int(r, 300_000) }, () => 5),
      label: 2,
    })),
  'extra keys': (l, r) => (l[int(r, l.length)] = JSON.stringify({ ...row(r), attention_mask: [1], id: junk(r) })),
  'duplicate keys': (l, r) => (l[int(r, l.length)] = '{"input_ids": [1], "label": 0, "label": "x"}'),
  'blank lines': (l, r) => l.splice(int(r, l.length + 1), 0, '', '   ', '\t'),
  'no rows': (l) => l.splice(0),
};

const BYTES: Record<string, (b: Buffer, r: Rng) => Buffer> = {
  BOM: (b) => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), b]),
  CRLF: (b) => Buffer.from(b.toString('latin1').replace(/\n/g, '\r\n'), 'latin1'),
  truncate: (b, r) => b.subarray(0, int(r, b.length + 1)),
  'byte flips': (b, r) => {
    const c = Buffer.from(b);
    for (let k = 1 + int(r, 8); k > 0 && c.length; k--) c[int(r, c.length)] = int(r, 256);
    return c;
  },
  'invalid UTF-8': (b, r) =>
    Buffer.concat([
      b.subarray(0, int(r, b.length + 1)),
      Buffer.from([0xc3, 0x28, 0xff]),
      b.subarray(int(r, b.length + 1)),
    ]),
  NUL: (b, r) => Buffer.concat([b.subarray(0, int(r, b.length + 1)), Buffer.alloc(1 + int(r, 4)), b]),
  'UTF-16': (b) => Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(b.toString('utf8'), 'utf16le')]),
  empty: () => Buffer.alloc(0),
  'no final newline': (b) => b.subarray(0, Math.max(0, b.length - 1)),
};

function jsonlCase(dir: string, r: Rng): string[] {
  const lines = Array.from({ length: 1 + int(r, 8) }, () => JSON.stringify(row(r)));
  const mutations: string[] = [];
  const lm = Object.keys(LINE_MUTATIONS);
  for (let k = int(r, 3); k > 0; k--) {
    const m = pick(r, lm);
    LINE_MUTATIONS[m](lines, r);
    mutations.push(m);
  }
  let bytes: Buffer = Buffer.from(lines.join('\n') + '\n');
  for (let k = int(r, 2); k > 0; k--) {
    const m = pick(r, Object.keys(BYTES));
    bytes = BYTES[m](bytes, r);
    mutations.push(m);
  }
  writeFileSync(join(dir, 'rows.jsonl'), bytes);
  return mutations;
}

export function fuzzJsonl(opts: FuzzOptions): Promise<FuzzResult> {
  let maxTokens = 64;
  return runTrainCases(
    'jsonl',
    opts,
    () => {},
    (dir, r) => {
      maxTokens = pick(r, [8, 64, 512, Infinity]);
      return jsonlCase(dir, r);
    },
    (dir) => {
      const { rows } = readTokenized(join(dir, 'rows.jsonl'), 3, VOCAB, maxTokens);
      for (const x of rows) {
        const ok =
          x.inputIds.length > 0 &&
          x.inputIds.length <= maxTokens &&
          Array.from(x.inputIds).every((t) => Number.isInteger(t) && t >= 0 && t < VOCAB) &&
          Number.isInteger(x.label) &&
          x.label >= 0 &&
          x.label < 3;
        if (!ok) throw new Error(`invariant: a row that breaks the rules was kept: ${JSON.stringify(x).slice(0, 120)}`);
      }
    },
  );
}

// ---------------------------------------------------------------- adapter_config.json

const fixtureConfig = (): ModelConfig =>
  parseHfConfig(JSON.parse(readFileSync(join(FIXTURE, 'config.json'), 'utf8')), join(FIXTURE, 'config.json'));

const KEY_MUTATIONS: Record<string, (j: Record<string, unknown>, r: Rng) => void> = {
  'junk value': (j, r) => (j[pick(r, Object.keys(j))] = junk(r)),
  'drop key': (j, r) => delete j[pick(r, Object.keys(j))],
  'unknown key': (j, r) =>
    (j[pick(r, ['lora_bias', 'exclude_modules', 'use_qalora', 'foo'])] = pick(r, [true, ['x'], 1])),
  'target regex': (j, r) =>
    (j.target_modules = pick(r, ['.*proj', '.*\\.0\\.self_attn\\.q_proj', '(', '.*q_proj|.*k_proj', 'all-linear', ''])),
  'target list': (j, r) =>
    (j.target_modules = pick(r, [[], ['q_proj'], ['nope'], ['all-linear'], [1], ['q_proj', 'q_proj']])),
  layers: (j, r) => (j.layers_to_transform = pick(r, [-1, 99, [0.5], '0', [0, 0], [], [3, 1], 2])),
  rank: (j, r) => (j.r = pick(r, [0, -8, 4, 16, 8.5, '8', 1e9])),
  alpha: (j, r) => (j.lora_alpha = pick(r, [0, -1, 'x', null, 1e308])),
  dropout: (j, r) => (j.lora_dropout = pick(r, [-0.1, 1, 2, 'x', null, 0.999])),
  patterns: (j, r) =>
    (j[pick(r, ['rank_pattern', 'alpha_pattern'])] = pick(r, [
      { q_proj: 4 },
      { '(': 2 },
      { k_proj: -1 },
      [],
      { q_proj: 'x' },
    ])),
  'dora / loftq': (j, r) =>
    (j[pick(r, ['use_dora', 'loftq_config', 'layer_replication'])] = pick(r, [true, { bits: 4 }, [[0, 2]]])),
  init: (j, r) => (j.init_lora_weights = pick(r, ['pissa', 'gaussian', 'loftq', 'olora', false, 3])),
  'modules to save': (j, r) => (j.modules_to_save = pick(r, [null, [], ['lm_head'], 'score', [1]])),
  'peft type': (j, r) => (j.peft_type = pick(r, ['LOHA', 'lora', null])),
};

export function fuzzAdapterConfig(opts: FuzzOptions): Promise<FuzzResult> {
  const c = fixtureConfig();
  const text = readFileSync(join(FIXTURE, 'adapter', 'adapter_config.json'), 'utf8');
  const base = openCheckpoint(FIXTURE);
  return runTrainCases(
    'adapter-config',
    opts,
    (dir) =>
      copyFileSync(join(FIXTURE, 'adapter', 'adapter_model.safetensors'), join(dir, 'adapter_model.safetensors')),
    (dir, r) => {
      const j = JSON.parse(text) as Record<string, unknown>;
      const mutations: string[] = [];
      for (let k = 1 + int(r, 3); k > 0; k--) {
        const m = pick(r, Object.keys(KEY_MUTATIONS));
        KEY_MUTATIONS[m](j, r);
        mutations.push(m);
      }
      let bytes: Buffer = Buffer.from(JSON.stringify(j, null, 2));
      if (r.next() < 0.25) {
        const m = pick(r, ['truncate', 'byte flips', 'BOM', 'empty', 'invalid UTF-8']);
        bytes = BYTES[m](bytes, r);
        mutations.push(m);
      } else if (r.next() < 0.05) {
        bytes = Buffer.from(pick(r, ['null', '[]', '1', '"LORA"']));
        mutations.push('not an object');
      }
      writeFileSync(join(dir, 'adapter_config.json'), bytes);
      return mutations;
    },
    (dir) => {
      // train's path: import's adapter checks against the base, then the settings, the plan and the tensors
      const ad = openAdapter(dir);
      try {
        checkAdapter(
          ad,
          { names: base.names, shape: (n) => base.info(n).shape },
          [...ad.saved.keys()].filter((n) => /^score\./.test(n)),
        );
      } finally {
        ad.close();
      }
      const { spec, params } = adapterSettings(dir, c);
      checkParams(spec, params, dir);
      if (!(spec.lora.size > 0 || spec.head.length > 0))
        throw new Error('invariant: an adapter that trains nothing was accepted');
    },
  );
}

// ---------------------------------------------------------------- --resume checkpoint

export function fuzzTrainCheckpoint(opts: FuzzOptions): Promise<FuzzResult> {
  const c = fixtureConfig();
  const spec = planLora(c, {
    r: 2,
    lora_alpha: 4,
    lora_dropout: 0,
    target_modules: ['q_proj', 'v_proj'],
    layers_to_transform: null,
    use_rslora: false,
    modules_to_save: [],
  });
  const ck = openCheckpoint(FIXTURE);
  const params0 = defaultInit(spec, ck.get, 1);
  ck.close();
  const shapes = new Map<string, number[]>();
  for (const m of spec.lora.values()) {
    shapes.set(m.aKey, [m.rank, m.inFeatures]);
    shapes.set(m.bKey, [m.outFeatures, m.rank]);
  }
  const fingerprint = { base: 'x', data: '8 rows y', r: 2, lr: 5e-5, seed: 1 };
  const clean = mkdtempSync(join(tmpdir(), 'arenakit-fuzz-ckbase-'));
  saveCheckpoint(
    join(clean, 'checkpoint'),
    params0,
    adamState(params0),
    { step: 3, adamT: 3, rows: 8, fingerprint },
    shapes,
  );
  const cleanJson = readFileSync(join(clean, 'checkpoint', 'checkpoint.json'), 'utf8');
  const cleanState = readFileSync(join(clean, 'checkpoint', 'state.safetensors'));
  rmSync(clean, { recursive: true, force: true });
  const copy = (p: Params): Params => new Map([...p].map(([k, v]) => [k, Float32Array.from(v)]));
  return runTrainCases(
    'train-checkpoint',
    opts,
    () => {},
    (dir, r) => {
      const mutations: string[] = [];
      let json = cleanJson;
      let state: Buffer = cleanState;
      const which = int(r, 3); // 0: checkpoint.json, 1: state.safetensors, 2: both
      if (which !== 1) {
        const j = JSON.parse(json) as Record<string, unknown>;
        const m = pick(r, ['junk value', 'drop key', 'fingerprint field', 'bytes']);
        if (m === 'junk value') j[pick(r, Object.keys(j))] = junk(r);
        else if (m === 'drop key') delete j[pick(r, Object.keys(j))];
        else if (m === 'fingerprint field')
          (j.fingerprint as Record<string, unknown>)[pick(r, Object.keys(fingerprint))] = junk(r);
        json = JSON.stringify(j);
        if (m === 'bytes')
          json = BYTES[pick(r, ['truncate', 'byte flips', 'empty', 'BOM'])](Buffer.from(json), r).toString('latin1');
        mutations.push(`checkpoint.json: ${m}`);
      }
      if (which !== 0) {
        const s = stMutate(state, r);
        state = s.bytes;
        mutations.push(...s.mutations.map((m) => `state: ${m}`));
      }
      writeFileSync(join(dir, 'checkpoint.json'), json);
      writeFileSync(join(dir, 'state.safetensors'), state);
      return mutations;
    },
    (dir) => {
      const params = copy(params0);
      const st = adamState(params);
      const got = loadCheckpoint(dir, params, st, 8, fingerprint);
      for (const [k, v] of params)
        if (v.length !== params0.get(k)!.length || !v.every(Number.isFinite))
          throw new Error(`invariant: ${k} loaded broken`);
      if (!(Number.isInteger(got.step) && got.step >= 0)) throw new Error(`invariant: step ${got.step} accepted`);
    },
  );
}
