// Issue 21: does a saved optimized graph WITH the CPU EP's prepacked weights
// (session.save_external_prepacked_constant_initializers = 1) reload with the right logits, and does a session
// start faster from it? MatMulNBits int8 / int4, block 128, accuracy_level 4, fused and explicit attention, on the
// tiny model (src/model/tiny.ts) and the issue-21 bench model (bench/cpu-prefill-bench.ts); `--bits 32` checks the
// fp32 graph (MatMul) the same way. Loads ORT and the
// kit from the package root it is run in (process.cwd()), so one script checks two ORT versions in two checkouts.
// Run: `npx tsx PATH/bench/prepacked-start-check.ts --dir /tmp/pp [--models tiny,bench] [--bits 8,4] [--block 128]
// [--level 4] [--attention fused,explicit] [--rounds 5]` (--bits rows: the int8-rows graph) (the bench model's level-4 cases crash: one case a process)
import { existsSync, mkdirSync, statSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
}

async function main(): Promise<void> {
  const root = process.cwd();
  const ort = createRequire(join(root, 'package.json'))('onnxruntime-node');
  const imp = (p: string) => import(pathToFileURL(join(root, p)).href);
  const b = await imp('bench/cpu-prefill-bench.ts');
  const { tinyConfig, tinyWeights } = await imp('src/model/tiny.ts');
  const { saveOptions, loadOptions } = await imp('src/infer/optimized.ts');
  const version: string = ort.env.versions?.common ?? 'unknown';
  const dir = join(arg('dir', '/tmp/arenakit-prepacked'), version);
  mkdirSync(dir, { recursive: true });
  const graphs = arg('graphs', dir);
  const rounds = Number(arg('rounds', '5'));
  const models = arg('models', 'tiny,bench').split(',');
  const attentions = arg('attention', 'fused,explicit').split(',');
  const block = Number(arg('block', '128'));
  const level = Number(arg('level', '4'));
  const sopt = {
    intraOpNumThreads: 2,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  };
  for (const model of models) {
    const c = model === 'tiny' ? tinyConfig({ vocabSize: 512 }) : b.benchConfig();
    const w = model === 'tiny' ? tinyWeights(c, 3) : b.benchWeights(c, 21);
    const rows =
      model === 'tiny'
        ? [Array.from({ length: 40 }, (_, i) => 2 + ((i * 37) % 500)), Array.from({ length: 30 }, (_, i) => 3 + i)]
        : b.benchRows(2, (i: number) => (i ? 200 : 256), 2);
    for (const bitsArg of arg('bits', '8,4').split(','))
      for (const attention of attentions) {
        // bits 32: the fp32 graph (MatMul, the CPU EP prepacks it for SGEMM); rows: the int8-rows graph (MatMulInteger)
        const bits = Number(bitsArg);
        const rows8 = bitsArg === 'rows';
        const q = rows8 ? 'int8 rows' : bits === 32 ? 'fp32' : `int${bits} b${block} L${level}`;
        const name = `${model} ${q} ${attention}`;
        const s = {
          name: `${model === 'tiny' ? 'tiny ' : ''}${q}${attention === 'fused' ? '' : ' ' + attention}`,
          linear: rows8
            ? { kind: 'int8-rows' }
            : bits === 32
              ? { kind: 'float' }
              : { kind: 'nbits', bits, blockSize: block, symmetric: true },
          accuracyLevel: rows8 || bits === 32 ? undefined : level,
          attention,
        };
        const gfile = join(model === 'tiny' ? dir : graphs, `${s.name.replace(/\s+/g, '_')}.onnx`);
        if (!existsSync(gfile)) b.writeBenchGraph(model === 'tiny' ? dir : graphs, c, w, s);
        const tag = `${s.name.replace(/\s+/g, '_')}`;
        const paths = (kind: string) => ({
          model: join(dir, `${tag}.${kind}.onnx`),
          partial: join(dir, `${tag}.${kind}.onnx`),
          dataName: `${tag}.${kind}.data`,
        });
        const plainP = paths('opt');
        const packP = paths('prepacked');
        const time = async (f: () => Promise<any>) => {
          const t = Date.now();
          const x = await f();
          return { x, s: (Date.now() - t) / 1000 };
        };
        // save both kinds of optimized graph
        const save1 = await time(() => ort.InferenceSession.create(gfile, { ...sopt, ...saveOptions(plainP) }));
        const plainLogits = (await b.runBatch(save1.x, rows)).logits; // the plain session's logits (it saved too)
        await save1.x.release();
        const so = saveOptions(packP);
        const save2 = await time(() =>
          ort.InferenceSession.create(gfile, {
            ...sopt,
            ...so,
            extra: {
              ...so.extra,
              session: { ...so.extra.session, save_external_prepacked_constant_initializers: '1' },
            },
          }),
        );
        const savingLogits = (await b.runBatch(save2.x, rows)).logits;
        await save2.x.release();
        const load = (file: string, o: object) => ort.InferenceSession.create(file, o);
        const fromOpt = await load(plainP.model, { ...sopt, ...loadOptions });
        const optLogits = (await b.runBatch(fromOpt, rows)).logits;
        await fromOpt.release();
        // session start, interleaved, median of `rounds` (before running the prepacked graph: that run may crash)
        const t: Record<string, number[]> = { plain: [], saved: [], saved_prepacked: [] };
        const kinds: [string, string, object][] = [
          ['plain', gfile, sopt],
          ['saved', plainP.model, { ...sopt, ...loadOptions }],
          ['saved_prepacked', packP.model, { ...sopt, ...loadOptions }],
        ];
        for (let r = 0; r < rounds; r++)
          for (let i = 0; i < kinds.length; i++) {
            const [k, f, o] = kinds[(i + r) % kinds.length];
            const x = await time(() => load(f, o));
            t[k].push(x.s);
            await x.x.release();
          }
        const start_s = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, +b.median(v).toFixed(3)]));
        console.log(JSON.stringify({ ort: version, case: name, start_s, raw_s: t }));
        const fromPack = await load(packP.model, { ...sopt, ...loadOptions });
        process.stderr.write(`${name}: running the graph saved with prepacked weights\n`);
        const packLogits: Float32Array = (await b.runBatch(fromPack, rows)).logits;
        await fromPack.release();
        const size = (prefix: string) =>
          readdirSync(dir)
            .filter((f) => f.startsWith(prefix))
            .reduce((a, f) => a + statSync(join(dir, f)).size, 0);
        const r = {
          ort: version,
          case: name,
          logit_scale: +plainLogits.reduce((m: number, x: number) => Math.max(m, Math.abs(x)), 0).toFixed(3),
          saved_vs_plain: b.maxAbs(optLogits, plainLogits),
          saving_session_with_prepack_vs_plain: b.maxAbs(savingLogits, plainLogits),
          saved_prepacked_vs_plain: packLogits.some((x) => Number.isNaN(x)) ? 'NaN' : b.maxAbs(packLogits, plainLogits),
          start_s,
          save_s: { saved: +save1.s.toFixed(3), saved_prepacked: +save2.s.toFixed(3) },
          bytes_mb: {
            saved: +(size(`${tag}.opt.`) / 1e6).toFixed(1),
            saved_prepacked: +(size(`${tag}.prepacked.`) / 1e6).toFixed(1),
          },
        };
        console.log(JSON.stringify(r));
      }
  }
}

void main();
