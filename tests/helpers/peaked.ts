// A peaked test model: the hf-reference gemma2-tiny fixture merged with its LoRA adapter (logits
// several units apart, so probabilities are far from uniform) imported by the trainer with the byte
// tokenizer whose ids fit the fixture's 512-row vocabulary. A column, calibration or TTA mix-up
// changes its submission visibly, unlike the seeded tiny model's near-uniform one.
// `permuteLabels` writes a copy of the fixture whose score rows AND id2label are permuted together
// ({0: winner_tie, 1: winner_model_a, 2: winner_model_b}): the same model, stored in another label order.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURES } from './fixtures';
import { writeByteTokenizer } from './byte-tokenizer';

export const ROOT = join(__dirname, '..', '..');
export const TRAINER = join(ROOT, 'dist', 'trainer.cjs');
export const RUNNER = join(ROOT, 'dist', 'runner.cjs');
export const PEAKED_FIXTURE = join(FIXTURES, 'gemma2-tiny');

export function ensureBuilt(): void {
  if (!existsSync(RUNNER) || !existsSync(TRAINER)) {
    const r = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
    assert.equal(r.status, 0, 'npm run build failed');
  }
}

/** Parses a safetensors file (F32 tensors only, as the fixtures are) into name -> {shape, data}. */
function readF32(path: string): Map<string, { shape: number[]; data: Float32Array }> {
  const b = readFileSync(path);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString('utf8'));
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, t] of Object.entries<any>(header)) {
    if (name === '__metadata__') continue;
    assert.equal(t.dtype, 'F32', `${path}: ${name} is ${t.dtype}`);
    const [s, e] = t.data_offsets;
    const bytes = b.subarray(8 + n + s, 8 + n + e);
    out.set(name, {
      shape: t.shape,
      data: new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length)),
    });
  }
  return out;
}

function writeF32(path: string, tensors: Map<string, { shape: number[]; data: Float32Array }>): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const [name, t] of tensors) {
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [off, off + t.data.byteLength] };
    off += t.data.byteLength;
  }
  let hj = JSON.stringify(header);
  hj += ' '.repeat((8 - (hj.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hj.length));
  writeFileSync(
    path,
    Buffer.concat([
      len,
      Buffer.from(hj),
      ...[...tensors.values()].map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)),
    ]),
  );
}

/** New row r of the score head = old row PERM[r]: tie, A, B. */
export const PERMUTED_ID2LABEL = { 0: 'winner_tie', 1: 'winner_model_a', 2: 'winner_model_b' };
const PERM = [2, 0, 1];

function permuteRows(t: { shape: number[]; data: Float32Array }): { shape: number[]; data: Float32Array } {
  const h = t.shape[1];
  const data = new Float32Array(t.data.length);
  PERM.forEach((src, r) => data.set(t.data.subarray(src * h, (src + 1) * h), r * h));
  return { shape: t.shape, data };
}

type F32 = { shape: number[]; data: Float32Array };

/** A copy of the fixture (base + adapter) with a new id2label and the score rows (base and the adapter's modules_to_save copy) changed to match. */
function fixtureCopy(out: string, id2label: Record<number, string>, scoreRows: (t: F32) => F32): string {
  mkdirSync(join(out, 'adapter'), { recursive: true });
  const cfg = JSON.parse(readFileSync(join(PEAKED_FIXTURE, 'config.json'), 'utf8'));
  cfg.id2label = id2label;
  cfg.label2id = Object.fromEntries(Object.entries(id2label).map(([k, v]) => [v, Number(k)]));
  writeFileSync(join(out, 'config.json'), JSON.stringify(cfg, null, 2));
  const base = readF32(join(PEAKED_FIXTURE, 'model.safetensors'));
  base.set('score.weight', scoreRows(base.get('score.weight')!));
  writeF32(join(out, 'model.safetensors'), base);
  copyFileSync(join(PEAKED_FIXTURE, 'adapter', 'adapter_config.json'), join(out, 'adapter', 'adapter_config.json'));
  const ad = readF32(join(PEAKED_FIXTURE, 'adapter', 'adapter_model.safetensors'));
  ad.set('base_model.model.score.weight', scoreRows(ad.get('base_model.model.score.weight')!));
  writeF32(join(out, 'adapter', 'adapter_model.safetensors'), ad);
  return out;
}

/** A copy of the fixture with score rows and id2label permuted together. */
export const permutedFixture = (out: string): string => fixtureCopy(out, PERMUTED_ID2LABEL, permuteRows);

/**
 * A two-label copy of the fixture (the WSDM head): score rows A and B only, id2label {0: model_a,
 * 1: model_b}. Its softmax equals the three-label model's A/B renormalised with the tie dropped, so
 * both must give the same WSDM probabilities.
 */
export const binaryFixture = (out: string): string =>
  fixtureCopy(out, { 0: 'model_a', 1: 'model_b' }, (t) => ({
    shape: [2, t.shape[1]],
    data: t.data.slice(0, 2 * t.shape[1]),
  }));

/** Imports the peaked model into `out` (fp32 unless opts.quant, CPU graph, max 256 tokens = the fixture's positions). */
export function makePeakedModel(
  tmp: string,
  name: string,
  opts: { permuteLabels?: boolean; binary?: boolean; attention?: string; quant?: 'fp32' | 'int8' | 'int4' } = {},
): string {
  ensureBuilt();
  const tok = join(tmp, 'byte-tokenizer');
  if (!existsSync(join(tok, 'tokenizer.json'))) writeByteTokenizer(tok);
  const base = opts.permuteLabels
    ? permutedFixture(join(tmp, `${name}-hf`))
    : opts.binary
      ? binaryFixture(join(tmp, `${name}-hf`))
      : PEAKED_FIXTURE;
  const out = join(tmp, name);
  const r = spawnSync(
    process.execPath,
    [
      TRAINER,
      'import',
      '--base',
      base,
      '--adapter',
      join(base, 'adapter'),
      '--tokenizer',
      tok,
      '--quant',
      opts.quant ?? 'fp32',
      '--max-tokens',
      '256',
      ...(opts.attention ? ['--attention', opts.attention] : []),
      ...(opts.permuteLabels || opts.binary ? [] : ['--labels', 'winner_model_a,winner_model_b,winner_tie']),
      '--out',
      out,
    ],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 0, r.stderr);
  return out;
}

/** Runs a bundle; returns status, stdout, stderr. */
export function node(
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [script, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    env: { ...process.env, ...env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs a bundle that must succeed. */
export function ok(script: string, args: string[]): { stdout: string; stderr: string } {
  const r = node(script, args);
  assert.equal(r.status, 0, `node ${script} ${args.join(' ')} exited ${r.status}\n${r.stderr}`);
  return r;
}

/** Submission probabilities as rows of three numbers. */
export function submissionProbs(path: string): number[][] {
  return readFileSync(path, 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.split(',').slice(-3).map(Number));
}

export function maxDiff(a: number[][], b: number[][]): number {
  assert.equal(a.length, b.length);
  let m = 0;
  a.forEach((r, i) => r.forEach((x, c) => (m = Math.max(m, Math.abs(x - b[i][c])))));
  return m;
}
