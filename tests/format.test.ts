// Templates, truncation (against a brute-force token-by-token reference) and encoding with the real
// Gemma-2 tokenizer (ids checked against known Gemma ids; pre-cut checked against full tokenization).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { readRows } from '../src/data/rows';
import { getTemplate, renderText, TEMPLATE_NAMES, TemplateError } from '../src/format/templates';
import { fairShares, keepHeadTail, splitAcrossTurns, truncateParts, type Parts } from '../src/format/truncate';
import {
  encodeCapped,
  encodeRow,
  encodeRowInfo,
  encodeRows,
  EncodeError,
  loadTokenizer,
  type ArenaTokenizer,
} from '../src/format/encode';
import type { ArenaRow } from '../src/types';
import { uniform as rng } from '../src/util/rng';

const SAMPLE = path.join(__dirname, '..', '..', 'shared', 'data', 'arena-sample-999.csv');
const TOK_DIR = path.join(__dirname, '..', 'node_modules', '@lenml', 'tokenizer-gemma2', 'models');
/** The templates a Gemma tokenizer runs: the Gemma chat family and the marker-free ones (other families: tests/templates.test.ts). */
const GEMMA_TEMPLATES = TEMPLATE_NAMES.filter(
  (n) => ['gemma', 'none'].includes(getTemplate(n).family) && getTemplate(n).truncation === 'head-tail',
);

const row = (prompt: string[], responseA: string[], responseB: string[], id = 'r1'): ArenaRow => ({
  id,
  line: 2,
  prompt,
  responseA,
  responseB,
});

describe('format: templates', () => {
  it('unknown template names the known ones', () => {
    const known =
      'gemma-chat, plain, judge, llama3-chat, chatml-chat, mistral-chat, gemma-judge, llama3-judge, chatml-judge, mistral-judge, notebook, notebook-parts';
    assert.throws(
      () => getTemplate('nope'),
      (e: Error) => e instanceof TemplateError && e.message === `Unknown template: nope (known: ${known})`,
    );
    assert.deepEqual(TEMPLATE_NAMES, known.split(', '));
    assert.deepEqual(GEMMA_TEMPLATES, ['gemma-chat', 'plain', 'judge', 'gemma-judge']);
  });

  it('gemma-chat: Gemma chat turns, multi-turn interleaved turn by turn', () => {
    const c = { prompt: ['P1', 'P2'], responseA: ['A1', 'A2'], responseB: ['B1', 'B2'] };
    const s = renderText(getTemplate('gemma-chat'), c);
    assert.ok(s.startsWith('<start_of_turn>user\n'));
    assert.ok(s.endsWith('<end_of_turn>\n<start_of_turn>model\n'));
    const order = ['P1', 'A1', 'B1', 'P2', 'A2', 'B2'].map((t) => s.indexOf(t));
    assert.ok(
      order.every((p, i) => p > 0 && (i === 0 || p > order[i - 1])),
      `order ${order}`,
    );
    assert.match(s, /which response/);
  });

  it('plain: the public notebook string (turns joined by a space, EOS at the end)', () => {
    const c = { prompt: ['p1', 'p2'], responseA: ['a1', 'a2'], responseB: ['b1', ''] };
    assert.equal(
      renderText(getTemplate('plain'), c),
      '<prompt>: p1 p2\n\n<response_a>: a1 a2\n\n<response_b>: b1 <eos>',
    );
  });

  it('judge: ### User / ### Assistant A / ### Assistant B blocks per turn', () => {
    const s = renderText(getTemplate('judge'), { prompt: ['Q1', 'Q2'], responseA: ['x', 'y'], responseB: ['u', 'v'] });
    assert.equal(s.split('### User\n').length, 3);
    assert.ok(s.indexOf('### User\nQ2') > s.indexOf('### Assistant B\nu'));
    assert.ok(s.includes('### Assistant A\ny') && s.includes('### Assistant B\nv'));
  });

  it('pads turn lists of different lengths with empty turns', () => {
    const segs = getTemplate('gemma-chat').render({ prompt: ['a', 'b'], responseA: ['x'], responseB: [] });
    assert.equal(segs.filter((s) => s.kind === 'slot').length, 6);
  });
});

/** Brute-force reference: hand out the budget one token per round to every part that still wants one. */
function refShares(lens: number[], budget: number): number[] {
  const out = [0, 0, 0];
  let left = budget;
  for (;;) {
    const want = [0, 1, 2].filter((i) => out[i] < lens[i]);
    if (!want.length || !left) return out;
    if (left >= want.length) {
      for (const i of want) out[i]++;
      left -= want.length;
      continue;
    }
    // Not enough for everyone this round: prompt first; the responses only both or, if one alone wants, it.
    if (want.includes(0)) {
      out[0]++;
      left--;
    }
    const ab = want.filter((i) => i > 0);
    if (ab.length === 1 && left > 0) out[ab[0]]++;
    if (ab.length === 2 && left >= 2) {
      out[1]++;
      out[2]++;
    }
    return out;
  }
}

function refTurns(lens: number[], budget: number): number[] {
  const out = lens.map(() => 0);
  let left = budget;
  for (;;) {
    const want = lens.map((_, i) => i).filter((i) => out[i] < lens[i]);
    if (!want.length || !left) return out;
    if (left >= want.length) {
      for (const i of want) out[i]++;
      left -= want.length;
      continue;
    }
    for (const i of want.reverse().slice(0, left)) out[i]++;
    return out;
  }
}

describe('format: truncate', () => {
  it('fairShares matches the token-by-token reference over random lengths, and is swap-symmetric', () => {
    const r = rng(1);
    let checked = 0;
    for (let k = 0; k < 20000; k++) {
      const scale = [3, 20, 300][k % 3];
      const lens = [0, 1, 2].map(() => Math.floor(r() * scale));
      const budget = Math.floor(r() * scale * 3);
      const got = fairShares(lens as [number, number, number], budget);
      assert.deepEqual(got, refShares(lens, budget), `lens ${lens} budget ${budget}`);
      const sw = fairShares([lens[0], lens[2], lens[1]], budget);
      assert.deepEqual(sw, [got[0], got[2], got[1]], `swap of lens ${lens} budget ${budget}`);
      const total = got[0] + got[1] + got[2];
      assert.ok(total <= budget && total >= Math.min(budget, lens[0] + lens[1] + lens[2]) - 1);
      checked++;
    }
    assert.equal(checked, 20000);
  });

  it('fairShares: a short part hands its unused share to the others', () => {
    assert.deepEqual(fairShares([10, 1000, 1000], 310), [10, 150, 150]);
    assert.deepEqual(fairShares([1000, 5, 1000], 305), [150, 5, 150]);
    assert.deepEqual(fairShares([1000, 1000, 1000], 301), [101, 100, 100]);
    assert.deepEqual(fairShares([1000, 1000, 1000], 302), [101, 100, 100]); // one token unused for symmetry
    assert.deepEqual(fairShares([1, 2, 3], 100), [1, 2, 3]);
  });

  it('splitAcrossTurns matches its reference (leftovers to the latest turns)', () => {
    const r = rng(2);
    for (let k = 0; k < 5000; k++) {
      const n = 1 + Math.floor(r() * 5);
      const lens = Array.from({ length: n }, () => Math.floor(r() * 60));
      const budget = Math.floor(r() * 150);
      assert.deepEqual(splitAcrossTurns(lens, budget), refTurns(lens, budget), `lens ${lens} budget ${budget}`);
    }
  });

  it('keepHeadTail keeps floor(keep/2) head and the rest from the tail', () => {
    const t = Array.from({ length: 10 }, (_, i) => i);
    assert.deepEqual(keepHeadTail(t, 5), [0, 1, 7, 8, 9]);
    assert.deepEqual(keepHeadTail(t, 4, 0.25), [0, 7, 8, 9]);
    assert.deepEqual(keepHeadTail(t, 12), t);
    assert.deepEqual(keepHeadTail(t, 0), []);
  });

  it('truncateParts: (P, B, A) gives exactly the swapped parts of (P, A, B); never over budget', () => {
    const r = rng(3);
    let next = 0;
    const turn = (n: number) => Array.from({ length: n }, () => next++);
    const part = () => Array.from({ length: 1 + Math.floor(r() * 3) }, () => turn(Math.floor(r() * 80)));
    for (let k = 0; k < 3000; k++) {
      const p: Parts<number> = { prompt: part(), responseA: part(), responseB: part() };
      const budget = Math.floor(r() * 300);
      const a = truncateParts(p, budget);
      const b = truncateParts({ prompt: p.prompt, responseA: p.responseB, responseB: p.responseA }, budget);
      assert.deepEqual(b.parts, { prompt: a.parts.prompt, responseA: a.parts.responseB, responseB: a.parts.responseA });
      const kept = [...a.parts.prompt, ...a.parts.responseA, ...a.parts.responseB].flat();
      assert.equal(kept.length, a.kept);
      assert.ok(a.kept <= budget);
      assert.equal(a.truncated, a.total > a.kept);
      // Kept tokens are each turn's head and tail, in order.
      for (const name of ['prompt', 'responseA', 'responseB'] as const) {
        p[name].forEach((t, i) => {
          const k2 = a.parts[name][i].length;
          assert.deepEqual(a.parts[name][i], keepHeadTail(t, k2));
        });
      }
    }
  });
});

describe('format: encode (real Gemma-2 tokenizer)', function () {
  this.timeout(120_000);
  let tok: ArenaTokenizer;
  let plain: Tokenizer;
  let rows: ArenaRow[];
  before(async () => {
    tok = loadTokenizer(TOK_DIR);
    plain = new Tokenizer(
      JSON.parse(readFileSync(path.join(TOK_DIR, 'tokenizer.json'), 'utf8')),
      JSON.parse(readFileSync(path.join(TOK_DIR, 'tokenizer_config.json'), 'utf8')),
    );
    rows = (await readRows(SAMPLE)).rows;
  });
  const plainIds = (s: string) => plain.encode(s, { add_special_tokens: false }).ids;

  it('parity with known Gemma ids (<bos> 2, <start_of_turn> 106, <end_of_turn> 107)', () => {
    assert.deepEqual(tok.prefixIds, [2]);
    assert.deepEqual(tok.suffixIds, []);
    assert.equal(tok.bosId, 2);
    assert.equal(tok.eosId, 1);
    assert.equal(tok.padId, 0);
    assert.deepEqual(
      tok.encode('<start_of_turn>user\nHello world<end_of_turn>\n<start_of_turn>model\n'),
      [106, 1645, 108, 4521, 2134, 107, 108, 106, 2516, 108],
    );
    assert.deepEqual(tok.encode('<bos><eos><pad>'), [2, 1, 0]);
  });

  it('loadTokenizer names a missing file', () => {
    const d = mkdtempSync(path.join(tmpdir(), 'arenakit-tok-'));
    try {
      assert.throws(
        () => loadTokenizer(d),
        (e: Error) => e instanceof EncodeError && e.message.includes('missing tokenizer.json'),
      );
      copyFileSync(path.join(TOK_DIR, 'tokenizer.json'), path.join(d, 'tokenizer.json'));
      assert.throws(
        () => loadTokenizer(d),
        (e: Error) => e instanceof EncodeError && e.message.includes('missing tokenizer_config.json'),
      );
      writeFileSync(path.join(d, 'tokenizer_config.json'), '{oops');
      assert.throws(() => loadTokenizer(d), /not valid JSON/);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('the hard-boundary property holds for the Gemma vocabulary, and chunked encoding equals plain encoding', () => {
    assert.equal(tok.hardBoundaries, true);
    const vocab = JSON.parse(readFileSync(path.join(TOK_DIR, 'tokenizer.json'), 'utf8'));
    const names = [...Object.keys(vocab.model.vocab), ...vocab.added_tokens.map((t: { content: string }) => t.content)];
    const spanning = names.filter((t) => /[^\u2581 ][\u2581 ]/.test(t) || (t.includes('\n') && /[^\n]/.test(t)));
    assert.deepEqual(spanning, []);
    let texts = 0;
    for (const r of rows.slice(0, 150)) {
      for (const t of [...r.prompt, ...r.responseA, ...r.responseB]) {
        assert.deepEqual(tok.encode(t), plainIds(t), `row ${r.id}`);
        texts++;
      }
    }
    console.log(`      chunked == plain on ${texts} texts`);
  });

  it('pre-cut of a 200,000-character text keeps exactly the full tokenization head and tail', () => {
    const r = rng(4);
    const words = Array.from(
      { length: 40_000 },
      (_, i) => (i % 97 === 0 ? '\n' : '') + `w${Math.floor(r() * 1e6)}`,
    ).join(' ');
    const cjk = Array.from({ length: 200_000 }, () => String.fromCodePoint(0x4e00 + Math.floor(r() * 400))).join('');
    for (const [name, text] of [
      ['words', words.slice(0, 200_000)],
      ['no spaces', cjk],
    ] as const) {
      assert.ok(text.length >= 199_000);
      let t0 = Date.now();
      const full = plainIds(text);
      const tFull = Date.now() - t0;
      for (const cap of [1, 100, 2000]) {
        t0 = Date.now();
        const got = encodeCapped(tok, text, cap);
        const tCut = Date.now() - t0;
        assert.deepEqual(got, full.slice(0, cap).concat(full.slice(full.length - cap)), `${name} cap ${cap}`);
        if (cap === 2000)
          console.log(
            `      ${name}: full tokenization ${full.length} ids in ${tFull} ms; pre-cut (cap ${cap}) ${tCut} ms`,
          );
      }
    }
  });

  it('encodeRow never exceeds maxTokens, starts with <bos>, and keeps head and tail of a long response', () => {
    const long = Array.from({ length: 30_000 }, (_, i) => `tok${i}`).join(' ') + ' THE_END';
    assert.ok(long.length > 200_000);
    const rw = row(['Summarise this.'], [long], ['Short answer.']);
    for (const template of GEMMA_TEMPLATES) {
      const ids = encodeRow(tok, rw, { template, maxTokens: 512, swap: false });
      assert.ok(ids.length <= 512 && ids.length >= 500, `${template}: ${ids.length}`);
      assert.equal(ids[0], 2);
      const text = tok.decode(ids);
      assert.ok(text.includes('tok0 tok1 tok2'), `${template}: head kept`);
      assert.ok(text.includes('tok29999 THE_END'), `${template}: tail kept`);
      assert.ok(text.includes('Summarise this.') && text.includes('Short answer.'), `${template}: short parts whole`);
      // The kept response tokens are exactly keepHeadTail of the full tokenization.
      const fullA = plainIds((template === 'plain' ? ' ' : '') + long);
      const start = Array.from(ids).indexOf(fullA[0]);
      // The same row with a one-token response ('x', or ' x' after plain's lead; an empty one would let the
      // markers around it merge, '\n' + '\n' = 109, now that the text is tokenized whole).
      const n =
        ids.length -
        (encodeRow(tok, row(['Summarise this.'], ['x'], ['Short answer.']), { template, maxTokens: 512, swap: false })
          .length -
          1);
      assert.deepEqual(Array.from(ids.slice(start, start + n)), keepHeadTail(fullA, n), template);
    }
  });

  it('encodeRow over sample rows: <= maxTokens for every template, budget and swap; swap = swapped row; untruncated rows decode to the rendered text', () => {
    const encodings = 3 * GEMMA_TEMPLATES.length * 120;
    let untruncated = encodings;
    for (const maxTokens of [96, 300, 1024]) {
      for (const template of GEMMA_TEMPLATES) {
        for (const r of rows.slice(0, 120)) {
          const a = encodeRowInfo(tok, r, { template, maxTokens, swap: false });
          assert.ok(a.ids.length <= maxTokens, `row ${r.id} ${template} ${maxTokens}: ${a.ids.length}`);
          const b = encodeRow(tok, r, { template, maxTokens, swap: true });
          const c = encodeRow(
            tok,
            { ...r, responseA: r.responseB, responseB: r.responseA },
            { template, maxTokens, swap: false },
          );
          assert.deepEqual(b, c);
          if (maxTokens === 1024 && template === 'gemma-chat' && r === rows[0])
            assert.notDeepEqual(a.ids, b, 'swap changes the ids');
          if (!a.truncated)
            assert.equal(tok.decode(a.ids), '<bos>' + renderText(getTemplate(template), r), `row ${r.id} ${template}`);
          else untruncated--;
        }
      }
    }
    console.log(`      ${untruncated} of ${encodings} encodings untruncated (checked by decoding)`);
    assert.ok(untruncated > 200);
  });

  it('drops the oldest turns when the template text does not fit; errors only when one turn cannot', () => {
    const n = 40;
    const r = row(
      Array.from({ length: n }, (_, i) => `question ${i}`),
      Array.from({ length: n }, (_, i) => `answer a ${i}`),
      Array.from({ length: n }, (_, i) => `answer b ${i}`),
    );
    const info = encodeRowInfo(tok, r, { template: 'gemma-chat', maxTokens: 200, swap: false });
    assert.ok(info.ids.length <= 200 && info.droppedTurns > 0 && info.truncated);
    assert.ok(tok.decode(info.ids).includes(`answer b ${n - 1}`));
    assert.throws(
      () => encodeRow(tok, r, { template: 'gemma-chat', maxTokens: 20, swap: false }),
      (e: Error) => e instanceof EncodeError && /row r1 .*raise maxTokens/.test(e.message),
    );
  });

  it('encodeRows on the 999 sample rows: stats and tokens/s', () => {
    const t0 = Date.now();
    const { ids, stats } = encodeRows(tok, rows, { template: 'gemma-chat', maxTokens: 2048, swap: false });
    const s = (Date.now() - t0) / 1000;
    console.log(
      `      999 rows, gemma-chat, maxTokens 2048: ${stats.tokens} ids in ${s.toFixed(2)} s = ${Math.round(stats.tokens / s)} tokens/s; truncated ${stats.truncated}; max ${stats.maxLength}`,
    );
    assert.equal(ids.length, 999);
    assert.equal(stats.rows, 999);
    assert.ok(stats.maxLength <= 2048);
    assert.equal(
      stats.tokens,
      ids.reduce((a, x) => a + x.length, 0),
    );
    assert.ok(stats.truncated > 0 && stats.truncated < 999);
  });
});
