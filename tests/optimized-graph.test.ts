// Issue 21: a CPU session saves ONNX Runtime's optimized graph (src/infer/optimized.ts) and the next session of
// the same graph starts from it, with the same logits; a broken saved graph falls back to the plain one; and why
// the saved graph leaves the CPU EP's prepacked weights out (pinned: they reload wrong on ORT 1.29.0 / 1.30.0).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tokenizerAssetsDir } from '../src/cli/commands/tiny';
import { loadOptions, optimizedDir, optimizedPaths, prepackSafe, saveOptions } from '../src/infer/optimized';
import { parseModel } from '../src/graph/serialise';
import { loadOrt } from '../src/infer/runtime';
import { createSession, resolveGraph, runLogits } from '../src/infer/session';
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

  // Why saveOptions leaves the CPU EP's prepacked weights out: a graph saved with them
  // (session.save_external_prepacked_constant_initializers) reloads with wrong logits on ORT 1.29.0 and 1.30.0
  // (NaN on this int4 block-32 accuracy_level-4 fixture, both variants; the bench model's session crashes on its
  // first run; measured on AVX-512 VNNI / AMX, BENCHMARKS.md "Saved graph with prepacked weights"). If this fails,
  // the loaded core reloads them right: measure the start again and consider saving them
  // (src/infer/optimized.ts) for that core only, behind a check like this one.
  for (const variant of ['fused', 'explicit'] as const)
    it(`${variant}: a graph saved WITH prepacked MatMulNBits weights still reloads wrong on this ORT`, async () => {
      const ort = loadOrt();
      const m = readManifest(weights);
      const file = join(weights, resolveGraph(m.graphs.cpu!, variant).file);
      const dir = join(tmp, 'prepacked');
      mkdirSync(dir, { recursive: true });
      const p = {
        model: join(dir, `${variant}.onnx`),
        partial: join(dir, `${variant}.onnx`),
        dataName: `${variant}.data`,
      };
      const so = saveOptions(p);
      const cpu = { executionProviders: ['cpu'], graphOptimizationLevel: 'all' as const, intraOpNumThreads: 1 };
      const saving = await ort.InferenceSession.create(file, {
        ...cpu,
        ...so,
        extra: { session: { ...(so.extra.session as object), save_external_prepacked_constant_initializers: '1' } },
      });
      const reloaded = await ort.InferenceSession.create(p.model, { ...cpu, ...loadOptions });
      const S = 40;
      const ids = BigInt64Array.from({ length: 2 * S }, (_, i) => BigInt(2 + ((i * 37) % 500)));
      const mask = BigInt64Array.from({ length: 2 * S }, (_, i) => (i >= S + 30 ? 0n : 1n));
      const d = maxAbsDiff(await runLogits(saving, ids, mask, 2, S), await runLogits(reloaded, ids, mask, 2, S));
      console.log(`      ${variant}: ORT ${ort.env.versions.common}: reloaded prepacked graph max abs diff ${d}`);
      assert.ok(
        d > 1e-3,
        `ORT ${ort.env.versions.common} reloads prepacked weights within ${d}: revisit saveOptions (DESIGN.md "Saved optimized graph")`,
      );
      await saving.release();
      await reloaded.release();
    });

  it('an int8-rows graph (MatMulInteger) is saved with its prepacked weights and reloads them exactly', async () => {
    const rows = join(tmp, 'w-rows');
    const config = tinyConfig({ vocabSize: 512 });
    await writeWeightsDir({
      dir: rows,
      config,
      weights: tinyWeights(config, 3),
      quant: { kind: 'int8', symmetric: true, linear: 'int8-rows' },
      graphs: ['cpu'],
      tokenizerDir: tokenizerAssetsDir(),
      maxTokens: 128,
      labels: [...LABEL_COLUMNS],
      provenance: { test: 'optimized-graph.test.ts' },
    });
    const m = readManifest(rows);
    const nbits = readManifest(weights);
    assert.equal(prepackSafe(parseModel(readFileSync(join(rows, m.graphs.cpu!.file)))), true);
    assert.equal(prepackSafe(parseModel(readFileSync(join(weights, nbits.graphs.cpu!.file)))), false, 'level 4');
    const S = 40;
    const ids = BigInt64Array.from({ length: 2 * S }, (_, i) => BigInt(2 + ((i * 37) % 500)));
    const mask = BigInt64Array.from({ length: 2 * S }, (_, i) => (i >= S + 30 ? 0n : 1n));
    const first = await createSession(rows, m.graphs.cpu!, 'fused', 'cpu', { ep: 'cpu', threads: 1 });
    const second = await createSession(rows, m.graphs.cpu!, 'fused', 'cpu', { ep: 'cpu', threads: 1 });
    assert.deepEqual([first.optimized, second.optimized], ['saved', 'loaded']);
    const savedGraph = readdirSync(process.env.ARENAKIT_OPTIMIZED_DIR!).find(
      (f) => f.startsWith(m.graphs.cpu!.sha256!.slice(0, 32)) && f.endsWith('.onnx'),
    )!;
    const prepackedEntries = (
      readFileSync(join(process.env.ARENAKIT_OPTIMIZED_DIR!, savedGraph))
        .toString('latin1')
        .match(/prepacked/g) ?? []
    ).length;
    const d = maxAbsDiff(
      await runLogits(first.session, ids, mask, 2, S),
      await runLogits(second.session, ids, mask, 2, S),
    );
    console.log(
      `      saved graph: ${prepackedEntries} prepacked entries; reloaded vs saving session max abs diff ${d} (tolerance 0)`,
    );
    assert.ok(prepackedEntries > 0);
    assert.equal(d, 0);
    await first.session.release();
    await second.session.release();
  });

  it('a broken saved graph warns, falls back to the plain graph and is saved again', async () => {
    const m = readManifest(weights);
    const dir = process.env.ARENAKIT_OPTIMIZED_DIR!;
    const model = readdirSync(dir).find(
      (f) => f.startsWith(m.graphs.cpu!.sha256!.slice(0, 32)) && f.endsWith('-fused.onnx'),
    )!;
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
