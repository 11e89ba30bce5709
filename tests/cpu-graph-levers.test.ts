// Issue 21, the CPU graph levers against the HF fixtures: the last layer beyond attention on each row's last
// real token only (lastTokenEarly), and the explicit variant's one additive mask per batch (no per-layer Where).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { serialise } from '../src/graph/serialise';
import { buildDecoderGraph } from '../src/model/lower';
import { FIXTURES, fixtureConfig, maxAbsDiff, runLogits } from './helpers/fixtures';
import { openCheckpoint } from '../src/weights/safetensors';

const json = (p: string) => JSON.parse(readFileSync(p, 'utf8'));

describe('CPU graph levers (issue 21) against the HF fixtures', function () {
  this.timeout(60000);
  for (const model of ['gemma2-tiny', 'llama3-tiny', 'qwen3-tiny'])
    for (const attention of ['fused', 'explicit'] as const)
      it(`${model} ${attention}: the last layer on the last token only gives HF's logits; the gather sits before its o_proj`, async () => {
        const dir = join(FIXTURES, model);
        const cfg = fixtureConfig(dir);
        const ck = openCheckpoint(dir);
        const inputs = json(join(dir, 'inputs.json'));
        const want = json(join(dir, 'expected.json')).base_logits;
        const d: Record<string, number> = {};
        for (const early of [true, false]) {
          const g = buildDecoderGraph(cfg, ck.get, {
            linear: { kind: 'float' },
            activations: 'float32',
            attention,
            lastTokenEarly: early,
          });
          const names = g.nodes.map((n) => n.name);
          const gather = names.findIndex((n) => n.startsWith('last_token'));
          const lastO = names.findIndex((n) => n.includes(`layers.${cfg.numLayers - 1}.self_attn.o_proj`));
          assert.ok(gather >= 0 && lastO >= 0, `nodes: ${names.slice(-30).join(', ')}`);
          assert.equal(gather < lastO, early, `gather at ${gather}, last o_proj at ${lastO}`);
          const bytes = serialise(g);
          d[String(early)] = Math.max(
            maxAbsDiff(await runLogits(bytes, inputs.padded), (want.padded as number[][]).flat()),
            maxAbsDiff(await runLogits(bytes, inputs.single), (want.single as number[][]).flat()),
          );
        }
        ck.close();
        console.log(
          `      ${model} ${attention}: vs HF base_logits, last token early ${d.true.toExponential(2)}, whole last layer ${d.false.toExponential(2)} (tolerance 3e-5)`,
        );
        assert.ok(d.true <= 3e-5 && d.false <= 3e-5);
      });

  it('gate and up as two projections (packGateUp false): no MLP Split, the same logits as HF', async () => {
    const dir = join(FIXTURES, 'llama3-tiny');
    const cfg = fixtureConfig(dir);
    const ck = openCheckpoint(dir);
    const inputs = json(join(dir, 'inputs.json'));
    const want = json(join(dir, 'expected.json')).base_logits;
    for (const packGateUp of [false, true]) {
      const g = buildDecoderGraph(cfg, ck.get, { linear: { kind: 'float' }, activations: 'float32', packGateUp });
      const splits = g.nodes.filter((n) => n.op === 'Split' && n.name.includes('mlp')).length;
      assert.equal(splits, packGateUp ? cfg.numLayers : 0);
      const d = maxAbsDiff(await runLogits(serialise(g), inputs.padded), (want.padded as number[][]).flat());
      console.log(`      packGateUp ${packGateUp}: ${splits} MLP Splits, vs HF ${d.toExponential(2)} (tolerance 3e-5)`);
      assert.ok(d <= 3e-5);
    }
    ck.close();
  });

  it('explicit attention: one mask Where per window for the whole graph, an Add in every layer', () => {
    const dir = join(FIXTURES, 'gemma2-tiny'); // sliding + global layers: two masks
    const cfg = fixtureConfig(dir);
    const ck = openCheckpoint(dir);
    const g = buildDecoderGraph(cfg, ck.get, {
      linear: { kind: 'float' },
      activations: 'float32',
      attention: 'explicit',
    });
    ck.close();
    const wheres = g.nodes.filter((n) => n.op === 'Where');
    const adds = g.nodes.filter((n) => /attn\.masked$/.test(n.name));
    console.log(`      ${wheres.length} Where (${wheres.map((n) => n.name).join(', ')}), ${adds.length} masked Adds`);
    assert.equal(wheres.length, 2);
    assert.equal(adds.length, cfg.numLayers);
    assert.ok(adds.every((n) => n.op === 'Add'));
  });
});
