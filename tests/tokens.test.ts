// Issue 18: the model sees at inference exactly the tokens it saw in training. References we did not
// write: the public-notebook text built here by a plain function from the description, over
// cells read with fast-csv / hyparquet (not the kit's reader), tokenized in ONE call by
// @huggingface/tokenizers with the model's own tokenizer.json (Gemma-2, Llama-3.1, Qwen2.5: npm
// @lenml/tokenizer-*), then right-truncated to N; and, for the probabilities, the fp32 ONNX graph run
// directly on those reference ids.
import assert from 'node:assert/strict';
import {
  copyFileSync,
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path, { join } from 'node:path';
import { parse as parseCsv } from '@fast-csv/parse';
import { Tokenizer } from '@huggingface/tokenizers';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import * as ort from 'onnxruntime-node';
import { readRows } from '../src/data/rows';
import { encodeRow, encodeRowInfo, loadTokenizer, bindTemplate } from '../src/format/encode';
import { CHAT, renderText, getTemplate, TEMPLATE_NAMES } from '../src/format/templates';
import { FAMILIES as MODEL_FAMILIES } from '../src/model/families';
import type { ArenaRow } from '../src/types';
import { renderWhole } from '../src/format/whole';
import { writeByteTokenizer } from './helpers/byte-tokenizer';
import { ensureBuilt, node, PEAKED_FIXTURE, RUNNER, TRAINER } from './helpers/peaked';

const SHARED = join(__dirname, '..', '..', 'shared', 'data');
const ARENA = join(SHARED, 'arena-sample-999.csv');
const WSDM = join(SHARED, 'wsdm-sample-test.parquet');
const MODULES = join(__dirname, '..', 'node_modules', '@lenml');
const TOKENIZERS = [
  { name: 'Gemma-2', dir: join(MODULES, 'tokenizer-gemma2', 'models'), chat: ['gemma-chat', 'gemma-judge'] },
  { name: 'Llama-3.1', dir: join(MODULES, 'tokenizer-llama3_1', 'models'), chat: ['llama3-chat', 'llama3-judge'] },
  { name: 'Qwen2.5', dir: join(MODULES, 'tokenizer-qwen2_5', 'models'), chat: ['chatml-chat', 'chatml-judge'] },
];

// ---- the reference side, written from the description
interface RawRow {
  id: string;
  prompt: string;
  a: string;
  b: string;
}

/** A JSON list of turns joined with a single space, null items read as ''; a plain string (WSDM) as is, null as ''. */
function partText(cell: string | null | undefined, jsonLists: boolean): string {
  if (cell === null || cell === undefined) return '';
  if (!jsonLists) return cell;
  const v = JSON.parse(cell) as (string | null)[];
  return v.map((x) => (x === null ? '' : x)).join(' ');
}

const notebookText = (r: RawRow, swap: boolean) =>
  '<prompt>: ' + r.prompt + '\n\n<response_a>: ' + (swap ? r.b : r.a) + '\n\n<response_b>: ' + (swap ? r.a : r.b);

function rawCsv(file: string): Promise<RawRow[]> {
  return new Promise((res, rej) => {
    const out: RawRow[] = [];
    createReadStream(file)
      .pipe(parseCsv({ headers: true }))
      .on('data', (r: Record<string, string>) =>
        out.push({
          id: r.id,
          prompt: partText(r.prompt, true),
          a: partText(r.response_a, true),
          b: partText(r.response_b, true),
        }),
      )
      .on('end', () => res(out))
      .on('error', rej);
  });
}

async function rawParquet(file: string): Promise<RawRow[]> {
  const rows = (await parquetReadObjects({ file: await asyncBufferFromFile(file), compressors })) as Record<
    string,
    string | null
  >[];
  return rows.map((r) => ({
    id: String(r.id),
    prompt: partText(r.prompt, false),
    a: partText(r.response_a, false),
    b: partText(r.response_b, false),
  }));
}

function hfTokenizer(dir: string): Tokenizer {
  return new Tokenizer(
    JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')),
    JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')),
  );
}

/** A weights directory with only a manifest and the tokenizer: what `tokens` reads. */
function tokenizerOnlyWeights(out: string, tokDir: string, template: string, maxTokens: number): string {
  mkdirSync(out, { recursive: true });
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(tokDir, f), join(out, f));
  const manifest = {
    format: 'arenakit-weights',
    version: 1,
    kind: 'neural',
    architecture: 'tokenizer-only',
    labels: ['winner_model_a', 'winner_model_b', 'winner_tie'],
    template,
    maxTokens,
    graphs: {},
    files: {},
    provenance: {},
  };
  writeFileSync(join(out, 'manifest.json'), JSON.stringify(manifest));
  return out;
}

const readIds = (file: string): { id: string; input_ids: number[] }[] =>
  readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));

describe('templates: chat markers belong to the model families', () => {
  it("each model family's defaultTemplate is a known template using that family's chat markers", () => {
    for (const [key, f] of Object.entries(MODEL_FAMILIES)) {
      const t = getTemplate(f.defaultTemplate);
      assert.ok(CHAT[key], `${key}: chat markers`);
      assert.equal(CHAT[t.family], CHAT[key], `${key}: ${f.defaultTemplate} uses the ${t.family} markers`);
    }
    for (const n of TEMPLATE_NAMES)
      assert.ok(getTemplate(n).family === 'none' || getTemplate(n).family in MODEL_FAMILIES, n);
  });
});

describe('tokens: the notebook recipe equals one tokenizer call on the notebook text', function () {
  this.timeout(1_200_000);
  let tmp: string;
  const data: Record<string, RawRow[]> = {};
  before(async () => {
    ensureBuilt();
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-tokens-'));
    data[ARENA] = await rawCsv(ARENA);
    data[WSDM] = await rawParquet(WSDM);
    assert.equal(data[ARENA].length, 999);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  for (const t of TOKENIZERS) {
    it(`${t.name}: runner.cjs tokens, arena sample and WSDM sample, N = 64 / 256 / 1,024, both TTA orders: 0 differing rows`, () => {
      const ref = hfTokenizer(t.dir);
      for (const file of [ARENA, WSDM]) {
        const rows = data[file];
        const full = [false, true].map((swap) => rows.map((r) => ref.encode(notebookText(r, swap)).ids));
        for (const n of [64, 256, 1024]) {
          const w = tokenizerOnlyWeights(join(tmp, `${t.name}-${n}`), t.dir, 'notebook', n);
          let differing = 0;
          let truncated = 0;
          for (const swap of [false, true]) {
            const out = join(tmp, `ids-${t.name}-${n}-${swap}.jsonl`);
            const r = node(RUNNER, [
              'tokens',
              '--data',
              file,
              '--weights',
              w,
              '--out',
              out,
              ...(swap ? ['--swap'] : []),
            ]);
            assert.equal(r.status, 0, r.stderr);
            const got = readIds(out);
            assert.equal(got.length, rows.length);
            got.forEach((g, i) => {
              assert.equal(g.id, rows[i].id, 'input order');
              const want = full[+swap][i].slice(0, n);
              if (full[+swap][i].length > n) truncated++;
              if (g.input_ids.join() !== want.join()) differing++;
            });
          }
          console.log(
            `      ${t.name} ${path.basename(file)} N=${n}: ${differing} of ${2 * rows.length} encodings differ (${truncated} truncated)`,
          );
          assert.equal(differing, 0);
        }
      }
    });
  }
});

describe('tokens: chat templates are tokenized as one string', function () {
  this.timeout(600_000);
  let rows: ArenaRow[];
  before(async () => {
    rows = (await readRows(ARENA)).rows;
  });

  for (const t of TOKENIZERS) {
    it(`${t.name}: untruncated ids = begin + one call on the rendered text (0 differing rows); token offsets add up`, () => {
      const tok = loadTokenizer(t.dir);
      const ref = hfTokenizer(t.dir);
      for (const name of [...t.chat, 'plain', 'judge']) {
        const b = bindTemplate(tok, name);
        let differing = 0;
        let offsetsMissing = 0;
        let perPiece = 0;
        for (const r of rows) {
          const x = encodeRowInfo(tok, r, { template: name, maxTokens: 1 << 20, swap: false });
          assert.equal(x.truncated, false);
          const text = renderText(getTemplate(name), r, (role) => tok.roleTokens[role]!);
          const whole = ref.encode(text, { add_special_tokens: false }).ids;
          if (Array.from(x.ids).join() !== [...b.beginIds, ...whole, ...b.endIds].join()) differing++;
          if (!tok.starts(text, whole)) offsetsMissing++;
          // What concatenating per-piece ids (the old encoding) would give: the comparison above can fail.
          const pieces = renderWhole(b, r).pieces.flatMap((p) => ref.encode(p.text, { add_special_tokens: false }).ids);
          if (pieces.join() !== whole.join()) perPiece++;
        }
        console.log(
          `      ${name}: ${differing} of ${rows.length} rows differ from one call on the text; token spellings add up to the text on ${rows.length - offsetsMissing}; per-piece ids would differ on ${perPiece}`,
        );
        assert.equal(differing, 0, name);
        // Where a normalizer changes the text (Qwen's NFC), whole.ts finds the parts by re-tokenizing prefixes instead.
        assert.ok(offsetsMissing <= rows.length / 100, `${name}: ${offsetsMissing}`);
      }
    });
  }

  it('head+tail over budget: template tokens whole, each part its head and tail, <= N (Gemma-2, 999 rows, N = 256)', () => {
    const tok = loadTokenizer(TOKENIZERS[0].dir);
    let cut = 0;
    for (const r of rows) {
      const x = encodeRowInfo(tok, r, { template: 'gemma-chat', maxTokens: 256, swap: false });
      assert.ok(x.ids.length <= 256);
      if (!x.truncated) continue;
      cut++;
      const s = tok.decode(x.ids);
      for (const m of [
        '<start_of_turn>user\n',
        '\n<response_a',
        '\n<response_b',
        '<end_of_turn>\n<start_of_turn>model\n',
      ])
        assert.ok(s.includes(m), `row ${r.id}: ${m}`);
    }
    console.log(`      ${cut} of ${rows.length} rows cut to 256 by head+tail`);
    assert.ok(cut > 100);
  });

  it('notebook-parts: the prompt part gets N/4 tokens, each response half of the rest, each part one call', () => {
    const tok = loadTokenizer(TOKENIZERS[0].dir);
    const ref = hfTokenizer(TOKENIZERS[0].dir);
    const n = 256;
    const room = n - 1; // Gemma's BOS
    let differing = 0;
    for (const r of rows.slice(0, 200)) {
      const p = '<prompt>: ' + r.prompt.join(' ');
      const a = '\n\n<response_a>: ' + r.responseA.join(' ');
      const b = '\n\n<response_b>: ' + r.responseB.join(' ');
      const one = (s: string, k: number) => ref.encode(s, { add_special_tokens: false }).ids.slice(0, k);
      const pb = Math.floor(room / 4);
      const rb = Math.floor((room - pb) / 2);
      const want = [2, ...one(p, pb), ...one(a, rb), ...one(b, rb)];
      if (
        Array.from(encodeRow(tok, r, { template: 'notebook-parts', maxTokens: n, swap: false })).join() !== want.join()
      )
        differing++;
    }
    console.log(`      notebook-parts N=${n}: ${differing} of 200 rows differ`);
    assert.equal(differing, 0);
  });
});

describe('tokens --check, import recipe options', function () {
  this.timeout(900_000);
  let tmp: string;
  let byteTok: string;
  before(() => {
    ensureBuilt();
    tmp = mkdtempSync(join(tmpdir(), 'arenakit-tokens-'));
    byteTok = join(tmp, 'byte-tok');
    writeByteTokenizer(byteTok);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('--check names a planted one-token difference (row id, position, both tokens decoded); identical ids pass', () => {
    const tokDir = TOKENIZERS[0].dir;
    const w = tokenizerOnlyWeights(join(tmp, 'w-check'), tokDir, 'notebook', 256);
    const ours = join(tmp, 'ours.jsonl');
    assert.equal(node(RUNNER, ['tokens', '--data', ARENA, '--weights', w, '--out', ours]).status, 0);
    const same = node(RUNNER, [
      'tokens',
      '--data',
      ARENA,
      '--weights',
      w,
      '--out',
      join(tmp, 'again.jsonl'),
      '--check',
      ours,
    ]);
    assert.equal(same.status, 0, same.stderr);
    assert.equal(JSON.parse(same.stdout.trim()).differing_rows, 0);
    const lines = readIds(ours);
    const k = 417;
    const pos = 40;
    const was = lines[k].input_ids[pos];
    const planted = was === 1645 ? 2516 : 1645; // 'user' / 'model' in Gemma's vocabulary
    lines[k].input_ids[pos] = planted;
    const ref = join(tmp, 'ref.jsonl');
    writeFileSync(ref, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    const r = node(RUNNER, ['tokens', '--data', ARENA, '--weights', w, '--out', join(tmp, 'x.jsonl'), '--check', ref]);
    assert.equal(r.status, 1, r.stderr);
    const tok = loadTokenizer(tokDir);
    const expected = `row ${lines[k].id}: first difference at position ${pos}: ours ${was} ${JSON.stringify(tok.decode([was]))}, reference ${planted} ${JSON.stringify(tok.decode([planted]))}`;
    assert.ok(r.stderr.includes(expected), r.stderr);
    assert.match(r.stderr, /tokens --check: 1 of 999 rows differ/);
    console.log(
      `      ${r.stderr
        .trim()
        .split('\n')
        .find((l) => l.includes('first difference'))}`,
    );
  });

  it('import refuses an unknown --template / --truncation listing the valid ones, and a template the tokenizer cannot run', () => {
    const base = [
      'import',
      '--base',
      PEAKED_FIXTURE,
      '--adapter',
      join(PEAKED_FIXTURE, 'adapter'),
      '--tokenizer',
      byteTok,
      '--quant',
      'fp32',
      '--labels',
      'winner_model_a,winner_model_b,winner_tie',
    ];
    const bad = node(TRAINER, [...base, '--template', 'nope', '--out', join(tmp, 'never1')]);
    assert.notEqual(bad.status, 0);
    assert.ok(bad.stderr.includes(`Unknown template: nope (known: ${TEMPLATE_NAMES.join(', ')})`), bad.stderr);
    assert.ok(!existsSync(join(tmp, 'never1', 'manifest.json')));
    const badT = node(TRAINER, [
      ...base,
      '--template',
      'notebook',
      '--truncation',
      'middle',
      '--out',
      join(tmp, 'never2'),
    ]);
    assert.notEqual(badT.status, 0);
    assert.ok(
      badT.stderr.includes('Unknown truncation for template notebook: middle (valid: right, head-tail, left)'),
      badT.stderr,
    );
    const noMarkers = node(TRAINER, [...base, '--template', 'llama3-chat', '--out', join(tmp, 'never3')]);
    assert.notEqual(noMarkers.status, 0);
    assert.match(noMarkers.stderr, /template llama3-chat needs the special token <\|begin_of_text\|>/);
    console.log(`      ${bad.stderr.trim().split('\n').at(-1)}`);
  });

  it("import takes template, truncation and N from the adapter's training.json, the family's template otherwise", () => {
    const adapter = join(tmp, 'adapter');
    mkdirSync(adapter, { recursive: true });
    for (const f of ['adapter_config.json', 'adapter_model.safetensors'])
      copyFileSync(join(PEAKED_FIXTURE, 'adapter', f), join(adapter, f));
    // What `trainer.cjs train` writes (src/train/run.ts): the run's options, recipe resolved.
    writeFileSync(
      join(adapter, 'training.json'),
      JSON.stringify({
        options: { base: PEAKED_FIXTURE, data: 'train.csv', template: 'notebook', truncation: 'left', maxTokens: 96 },
      }),
    );
    const common = [
      'import',
      '--base',
      PEAKED_FIXTURE,
      '--adapter',
      adapter,
      '--tokenizer',
      byteTok,
      '--quant',
      'fp32',
      '--labels',
      'winner_model_a,winner_model_b,winner_tie',
    ];
    const r = node(TRAINER, [...common, '--out', join(tmp, 'trained')]);
    assert.equal(r.status, 0, r.stderr);
    const m = JSON.parse(readFileSync(join(tmp, 'trained', 'manifest.json'), 'utf8'));
    assert.deepEqual([m.template, m.truncation, m.maxTokens], ['notebook', 'left', 96]);
    assert.match(r.stderr, /recipe notebook \(.*training\.json\), truncation left \(.*training\.json\), max tokens 96/);
    // The command line wins; the truncation then is the given template's own.
    const r2 = node(TRAINER, [
      ...common,
      '--template',
      'gemma-chat',
      '--max-tokens',
      '128',
      '--out',
      join(tmp, 'given'),
    ]);
    assert.equal(r2.status, 0, r2.stderr);
    const m2 = JSON.parse(readFileSync(join(tmp, 'given', 'manifest.json'), 'utf8'));
    assert.deepEqual([m2.template, m2.truncation, m2.maxTokens], ['gemma-chat', 'head-tail', 128]);
    // No training.json: the model family's default template.
    const r3 = node(TRAINER, [
      'import',
      '--base',
      PEAKED_FIXTURE,
      '--tokenizer',
      byteTok,
      '--quant',
      'fp32',
      '--labels',
      'winner_model_a,winner_model_b,winner_tie',
      '--max-tokens',
      '64',
      '--out',
      join(tmp, 'family'),
    ]);
    assert.equal(r3.status, 0, r3.stderr);
    assert.equal(
      JSON.parse(readFileSync(join(tmp, 'family', 'manifest.json'), 'utf8')).template,
      MODEL_FAMILIES.gemma2.defaultTemplate,
    );
    console.log(`      ${r.stderr.split('\n').find((l) => l.includes('recipe'))}`);
  });

  it("the trainer uses the same recipe: train --template notebook, import with no recipe flags, validate = the trainer's log loss", () => {
    const demo = join(__dirname, '..', 'demo', 'arena-demo-train.csv');
    const adapter = join(tmp, 'nb-adapter');
    const t = node(TRAINER, [
      'train',
      '--base',
      PEAKED_FIXTURE,
      '--tokenizer',
      byteTok,
      '--data',
      demo,
      '--valid',
      demo,
      '--template',
      'notebook',
      '--max-tokens',
      '128',
      '--max-steps',
      '2',
      '--batch-size',
      '8',
      '--lr',
      '1e-3',
      '--lora-r',
      '4',
      '--lora-alpha',
      '8',
      '--lora-dropout',
      '0',
      '--out',
      adapter,
    ]);
    assert.equal(t.status, 0, t.stderr);
    assert.match(t.stderr, /rows cut to --max-tokens 128 \(notebook, right truncation\)/);
    const trainerLoss = JSON.parse(t.stdout.trim().split('\n').at(-1)!).valid[0].logLoss;
    const w = join(tmp, 'nb-weights');
    const imp = node(TRAINER, [
      'import',
      '--base',
      PEAKED_FIXTURE,
      '--adapter',
      adapter,
      '--tokenizer',
      byteTok,
      '--quant',
      'fp32',
      '--labels',
      'winner_model_a,winner_model_b,winner_tie',
      '--out',
      w,
    ]);
    assert.equal(imp.status, 0, imp.stderr);
    const m = JSON.parse(readFileSync(join(w, 'manifest.json'), 'utf8'));
    assert.deepEqual([m.template, m.truncation, m.maxTokens], ['notebook', 'right', 128]);
    const v = node(RUNNER, ['validate', '--data', demo, '--weights', w, '--ep', 'cpu']);
    assert.equal(v.status, 0, v.stderr);
    const runnerLoss = JSON.parse(v.stdout.trim().split('\n').at(-1)!).log_loss_no_tta;
    console.log(
      `      notebook N=128: trainer validation log loss ${trainerLoss.toFixed(6)}, runner validate ${runnerLoss}; |diff| ${Math.abs(trainerLoss - runnerLoss).toExponential(2)} (tolerance 1e-4)`,
    );
    assert.ok(Math.abs(trainerLoss - runnerLoss) < 1e-4);
  });

  it('a model imported with the notebook recipe: predict = the fp32 graph fed the reference ids directly (<= 1e-6)', async () => {
    const w = join(tmp, 'notebook-model');
    const imp = node(TRAINER, [
      'import',
      '--base',
      PEAKED_FIXTURE,
      '--adapter',
      join(PEAKED_FIXTURE, 'adapter'),
      '--tokenizer',
      byteTok,
      '--quant',
      'fp32',
      '--template',
      'notebook',
      '--max-tokens',
      '256',
      '--labels',
      'winner_model_a,winner_model_b,winner_tie',
      '--out',
      w,
    ]);
    assert.equal(imp.status, 0, imp.stderr);
    // The first 60 arena rows as a test file.
    const raw = (await rawCsv(ARENA)).slice(0, 60);
    const csv = join(tmp, 'test60.csv');
    const q = (s: string) => '"' + s.replace(/"/g, '""') + '"';
    const src = await new Promise<Record<string, string>[]>((res, rej) => {
      const out: Record<string, string>[] = [];
      createReadStream(ARENA)
        .pipe(parseCsv({ headers: true }))
        .on('data', (r) => out.push(r))
        .on('end', () => res(out))
        .on('error', rej);
    });
    writeFileSync(
      csv,
      'id,prompt,response_a,response_b\n' +
        src
          .slice(0, 60)
          .map((r) => [r.id, q(r.prompt), q(r.response_a), q(r.response_b)].join(','))
          .join('\n') +
        '\n',
    );
    const sub = join(tmp, 'sub.csv');
    const p = node(RUNNER, [
      'predict',
      '--data',
      csv,
      '--weights',
      w,
      '--out',
      sub,
      '--ep',
      'cpu',
      '--tta',
      'none',
      '--self-check',
      'off',
    ]);
    assert.equal(p.status, 0, p.stderr);
    const got = readFileSync(sub, 'utf8')
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.split(',').slice(-3).map(Number));
    // Reference: the notebook text -> one call of the byte tokenizer -> first 256 ids -> the fp32 graph, one row at a time.
    const ref = hfTokenizer(byteTok);
    const m = JSON.parse(readFileSync(join(w, 'manifest.json'), 'utf8'));
    const session = await ort.InferenceSession.create(join(w, m.graphs.cpu.file), { intraOpNumThreads: 1 });
    let maxDiff = 0;
    for (let i = 0; i < raw.length; i++) {
      const ids = ref.encode(notebookText(raw[i], false)).ids.slice(0, 256);
      const t = (v: number[]) => new ort.Tensor('int64', BigInt64Array.from(v.map(BigInt)), [1, v.length]);
      const out = await session.run({ input_ids: t(ids), attention_mask: t(ids.map(() => 1)) });
      const z = Array.from(out.logits.data as Float32Array);
      const mx = Math.max(...z);
      const e = z.map((x) => Math.exp(x - mx));
      const s = e.reduce((a, b) => a + b, 0);
      e.forEach((x, c) => (maxDiff = Math.max(maxDiff, Math.abs(x / s - got[i][c]))));
    }
    await session.release();
    console.log(
      `      60 rows, notebook N=256: predict vs fp32 graph on the reference ids: max |diff| ${maxDiff.toExponential(3)} (tolerance 1e-6)`,
    );
    assert.ok(maxDiff <= 1e-6, `${maxDiff}`);
  });
});
