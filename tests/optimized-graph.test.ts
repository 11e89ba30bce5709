// Issue 21: a CPU session saves ONNX Runtime's optimized graph (src/infer/optimized.ts) and the next session of
// the same graph starts from it, with the same logits; a broken saved graph falls back to the plain one.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tokenizerAssetsDir } from '../src/cli/commands/tiny';
import { optimizedDir, optimizedPaths } from '../src/infer/optimized';
import { createSession, runLogits } from '../src/infer/session';
import { tinyConfig, tinyWeights } from '../src/model/tiny';
import { LABEL_COLUMNS } from '../src/task/task';
import { readManifest } from '../src/weights/manifest';
import { writeWeightsDir } from '../src/weights/write';
import { maxAbsDiff } from './helpers/fixtures';

describe('saved optimized graph (CPU EP)', function () {
  this.timeout(60000);
  let tmp: string;
  let weights: string;
  const saved = process.env.ARENAKIT_OPTIMIZED_DIR;
  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-optimized-'));
    weights = join(tmp, 'w');
    const config = tinyConfig({ vocabSize: 512 });
    await writeWeightsDir({
      dir: weights,
      config,
      weights: tinyWeights(config, 3),
      quant: { kind: 'int4', blockSize: 32, symmetric: true },
      graphs: ['cpu'],
      attention: ['fused', 'explicit'],
      tokenizerDir: tokenizerAssetsDir(),
      maxTokens: 128,
      labels: [...LABEL_COLUMNS],
      provenance: { test: 'optimized-graph.test.ts' },
    });
    process.env.ARENAKIT_OPTIMIZED_DIR = join(tmp, 'opt');
  });
  after(() => {
    if (saved === undefined) delete process.env.ARENAKIT_OPTIMIZED_DIR;
    else process.env.ARENAKIT_OPTIMIZED_DIR = saved;
    rmSync(tmp, { recursive: true, force: true });
  });

  it('keys: graph sha256 + core + EP + variant; none without a sha256; on only with ARENAKIT_OPTIMIZED_DIR', () => {
    const g = { sha256: 'ab'.repeat(32), variant: 'fused' };
    const a = optimizedPaths('/c', g, 'cu13', 'cpu', 1)!;
    assert.notEqual(a.model, optimizedPaths('/c', g, 'cu12', 'cpu', 1)!.model);
    assert.notEqual(a.model, optimizedPaths('/c', { ...g, variant: 'explicit' }, 'cu13', 'cpu', 1)!.model);
    assert.notEqual(a.model, optimizedPaths('/c', { ...g, sha256: 'cd'.repeat(32) }, 'cu13', 'cpu', 1)!.model);
    assert.notEqual(a.partial, optimizedPaths('/c', g, 'cu13', 'cpu', 2)!.partial, 'workers write apart');
    assert.equal(optimizedPaths('/c', { variant: 'fused' }, 'cu13', 'cpu'), null);
    assert.equal(optimizedDir({ ARENAKIT_OPTIMIZED_DIR: 'off' }), null);
    assert.equal(optimizedDir({}), null, 'off by default');
    assert.match(optimizedDir({ ARENAKIT_OPTIMIZED_DIR: 'tmp' })!, /arenakit-optimized$/);
    assert.equal(optimizedDir({ ARENAKIT_OPTIMIZED_DIR: '/x' }), '/x');
  });

  for (const variant of ['fused', 'explicit'] as const)
    it(`${variant}: the first session saves, the second starts from the saved graph with the same logits`, async () => {
      const m = readManifest(weights);
      const S = 40;
      const ids = BigInt64Array.from({ length: 2 * S }, (_, i) => BigInt(2 + ((i * 37) % 500)));
      const mask = BigInt64Array.from({ length: 2 * S }, (_, i) => (i >= S + 30 ? 0n : 1n));
      const t0 = Date.now();
      const first = await createSession(weights, m.graphs.cpu!, variant, 'cpu', { ep: 'cpu', threads: 1 });
      const t1 = Date.now();
      const second = await createSession(weights, m.graphs.cpu!, variant, 'cpu', { ep: 'cpu', threads: 1 });
      const t2 = Date.now();
      assert.equal(first.optimized, 'saved');
      assert.equal(second.optimized, 'loaded');
      const a = await runLogits(first.session, ids, mask, 2, S);
      const b = await runLogits(second.session, ids, mask, 2, S);
      const d = maxAbsDiff(a, b);
      console.log(
        `      ${variant}: start ${t1 - t0} ms plain (+ save), ${t2 - t1} ms from the saved graph; logits max abs diff ${d.toExponential(2)} (tolerance 1e-6)`,
      );
      assert.ok(d <= 1e-6, `${d}`);
      await first.session.release();
      await second.session.release();
    });

  it('a broken saved graph warns, falls back to the plain graph and is saved again', async () => {
    const m = readManifest(weights);
    const dir = process.env.ARENAKIT_OPTIMIZED_DIR!;
    const model = readdirSync(dir).find((f) => f.endsWith('-fused.onnx'))!;
    writeFileSync(join(dir, model), 'not a model');
    const warnings: string[] = [];
    const o = await createSession(weights, m.graphs.cpu!, 'fused', 'cpu', { ep: 'cpu', warn: (w) => warnings.push(w) });
    assert.equal(o.optimized, 'saved');
    assert.match(warnings.join('\n'), /did not load/);
    await o.session.release();
    const again = await createSession(weights, m.graphs.cpu!, 'fused', 'cpu', { ep: 'cpu' });
    assert.equal(again.optimized, 'loaded');
    await again.session.release();
  });
});
