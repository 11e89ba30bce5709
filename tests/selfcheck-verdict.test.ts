// Issue 22 item 3: the self-check is bounded work (at most CHECK_MAX_ROWS rows of CHECK_MAX_TOKENS
// tokens) and runs once per run: its verdict (keyed on the graph's sha256 + file stamps, the core, the
// EP and the variant) is written to a small file that later processes (predict after doctor, the
// --devices workers) reuse. No GPU here: the "GPU" graph is a CPU session labelled webgpu, which
// takes the check's path (the CPU EP on an fp32 graph is the reference and is never checked).
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { boundCheckIds, CHECK_MAX_ROWS, CHECK_MAX_TOKENS, selfCheck } from '../src/infer/selfcheck';
import { createSession, type OpenedGraph } from '../src/infer/session';
import { readManifest } from '../src/weights/manifest';
import { ensureBuilt, makePeakedModel } from './helpers/peaked';

const ramp = (n: number, from = 3) => Int32Array.from({ length: n }, (_, i) => from + (i % 200));

describe('self-check: bounded, once per run (verdict file)', function () {
  this.timeout(120000);
  let tmp: string, model: string;
  const saved = process.env.ARENAKIT_SELFCHECK_DIR;
  before(() => {
    ensureBuilt();
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-verdict-'));
    model = makePeakedModel(tmp, 'peaked');
    process.env.ARENAKIT_SELFCHECK_DIR = join(tmp, 'verdicts');
  });
  after(() => {
    if (saved === undefined) delete process.env.ARENAKIT_SELFCHECK_DIR;
    else process.env.ARENAKIT_SELFCHECK_DIR = saved;
    rmSync(tmp, { recursive: true, force: true });
  });

  it('boundCheckIds: at most 4 rows (2 shortest, 2 longest), each its last 64 tokens', () => {
    const ids = [ramp(5), ramp(9), ramp(30), ramp(700), ramp(2048), ramp(3000)];
    const b = boundCheckIds(ids);
    assert.equal(b.length, CHECK_MAX_ROWS);
    assert.deepEqual(
      b.map((x) => x.length),
      [5, 9, CHECK_MAX_TOKENS, CHECK_MAX_TOKENS],
    );
    assert.deepEqual(Array.from(b[3]), Array.from(ids[5].subarray(3000 - 64)));
    assert.ok(b.reduce((a, x) => a + x.length, 0) <= CHECK_MAX_ROWS * CHECK_MAX_TOKENS);
  });

  it('the first process checks and writes its verdict; the next reuses it without scoring a row', async () => {
    const m = readManifest(model);
    const open = async (): Promise<OpenedGraph> => ({
      ...(await createSession(model, m.graphs.cpu!, 'fused', 'cpu', { ep: 'cpu' })),
      ep: 'webgpu',
    });
    const ids = [ramp(5), ramp(40), ramp(200), ramp(240), ramp(250), ramp(255)];
    const warns: string[] = [];
    const opts = { ep: 'auto' as const, padId: 0, warn: (w: string) => warns.push(w) };
    const first = await selfCheck(model, m, await open(), ids, opts);
    console.log(
      `      first: ${first.check.rows} rows, max |diff| ${first.check.maxDiff}, ${first.check.seconds.toFixed(3)} s, reused ${!!first.check.reused}`,
    );
    assert.equal(first.check.rows, 4);
    assert.ok(
      first.check.maxDiff !== null && first.check.maxDiff < 1e-4,
      'fused vs the explicit reference, both fp32 on the CPU EP',
    );
    assert.ok(!first.check.reused);
    assert.equal(readdirSync(join(tmp, 'verdicts')).filter((f) => f.endsWith('.json')).length, 1);
    const second = await selfCheck(model, m, await open(), ids, opts);
    console.log(`      second: reused ${second.check.reused}, ${second.check.seconds.toFixed(3)} s`);
    assert.equal(second.check.reused, true);
    assert.equal(second.check.maxDiff, first.check.maxDiff, 'the recorded verdict');
    assert.ok(second.check.seconds <= first.check.seconds + 0.05);
    assert.deepEqual(warns, []);
    await first.graph.session.release();
    await second.graph.session.release();
  });
});
