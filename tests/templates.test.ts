// Chat templates with the real Llama-3.1, Qwen2.5, Llama-2 and Gemma-2 tokenizers (npm @lenml/tokenizer-*, the
// models' own tokenizer.json). References we did not write: the ids in each tokenizer.json's
// added_tokens, each tokenizer_config.json's own chat_template rendered by @huggingface/jinja (the
// engine transformers.js uses for apply_chat_template), and tokenizing the whole rendered string.
// Llama-2's tokenizer stands in for Mistral v0.1/v0.2 (no Mistral tokenizer.json is on the registry):
// the same SentencePiece design (32k BPE with byte fallback, Prepend '▁' normalizer, <s>/</s>) and the
// same [INST] ... [/INST] chat format.
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Template as Jinja } from '@huggingface/jinja';
import { readRows } from '../src/data/rows';
import {
  bindTemplate,
  encodeCapped,
  judgeAnswerIds,
  encodeRow,
  encodeRowInfo,
  loadTokenizer,
  type ArenaTokenizer,
} from '../src/format/encode';
import { getTemplate, renderText, TEMPLATE_NAMES, TemplateError } from '../src/format/templates';
import { keepHeadTail } from '../src/format/truncate';
import type { ArenaRow } from '../src/types';
import { uniform as rng } from '../src/util/rng';
import { writeByteTokenizer } from './helpers/byte-tokenizer';

const MODULES = path.join(__dirname, '..', 'node_modules');
const SAMPLE = path.join(__dirname, '..', '..', 'shared', 'data', 'arena-sample-999.csv');
const dirOf = (pkg: string) => path.join(MODULES, '@lenml', pkg, 'models');

interface Family {
  name: string;
  dir: string;
  chat: string;
  judge: string;
  /** Special tokens by content with the ids Meta / Qwen / Mistral publish for them. */
  known: Record<string, number>;
  /** The full prompt for one user message, as the model's own chat format writes it. */
  reference(content: string): string;
  /** The answer follows the prompt after this (SentencePiece models answer ' A', i.e. '▁A'). */
  answerLead: string;
  /**
   * Whether segment-wise ids must equal tokenizing the whole string on the short test row: true for
   * SentencePiece (no piece spans a '▁' or a byte-fallback newline, so segment edges cannot merge);
   * byte-level BPE merges '.\n' + '\n' into '.\n\n' across an edge (same text, other ids).
   */
  joinedIdsEqual: boolean;
}

const FAMILIES: Family[] = [
  {
    name: 'Llama-3.1',
    dir: dirOf('tokenizer-llama3_1'),
    chat: 'llama3-chat',
    judge: 'llama3-judge',
    known: {
      '<|begin_of_text|>': 128000,
      '<|start_header_id|>': 128006,
      '<|end_header_id|>': 128007,
      '<|eot_id|>': 128009,
    },
    reference: (content) => applyChatTemplate(dirOf('tokenizer-llama3_1'), content),
    answerLead: '',
    joinedIdsEqual: false,
  },
  {
    name: 'Qwen2.5',
    dir: dirOf('tokenizer-qwen2_5'),
    chat: 'chatml-chat',
    judge: 'chatml-judge',
    known: { '<|im_start|>': 151644, '<|im_end|>': 151645 },
    // Qwen2.5's chat_template adds a default system turn, which chatml leaves out.
    reference: (content) =>
      applyChatTemplate(dirOf('tokenizer-qwen2_5'), content).replace(
        '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n',
        '',
      ),
    answerLead: '',
    joinedIdsEqual: false,
  },
  {
    name: 'Llama-2 (SentencePiece, as Mistral v0.1/v0.2)',
    dir: dirOf('tokenizer-llama2'),
    chat: 'mistral-chat',
    judge: 'mistral-judge',
    known: { '<s>': 1 },
    // Mistral-7B-Instruct-v0.1's format for one user message (its tokenizer has no chat_template here).
    reference: (content) => `<s>[INST] ${content} [/INST]`,
    answerLead: ' ',
    joinedIdsEqual: true,
  },
  {
    name: 'Gemma-2',
    dir: dirOf('tokenizer-gemma2'),
    chat: 'gemma-chat',
    judge: 'gemma-judge',
    known: { '<bos>': 2, '<start_of_turn>': 106, '<end_of_turn>': 107 },
    // Gemma-2's chat format for one user message (the packaged tokenizer_config has no chat_template).
    reference: (content) => `<bos><start_of_turn>user\n${content}<end_of_turn>\n<start_of_turn>model\n`,
    answerLead: '',
    joinedIdsEqual: false, // '\n' + '\n' across an edge is 108,108; the joined string has 109
  },
];

// The user-turn texts, written out here rather than taken from src: the layout must decode to these.
const CHAT_INSTRUCTION =
  'Two AI assistants, A and B, answered the same user. Read the conversation and both responses, ' +
  'then judge which response a person would prefer: A, B, or a tie.\n';
const JUDGE_INSTRUCTION =
  'Please act as an impartial judge and evaluate the responses of two AI assistants to the user ' +
  'below. Do not let the order, the length or the names of the assistants influence you. Answer A, B or tie.\n';
const chatContent = (p: string, a: string, b: string) =>
  `${CHAT_INSTRUCTION}\n<prompt>\n${p}\n<response_a>\n${a}\n<response_b>\n${b}`;
const judgeContent = (p: string, a: string, b: string) =>
  `${JUDGE_INSTRUCTION}\n### User\n${p}\n\n### Assistant A\n${a}\n\n### Assistant B\n${b}\n\nWhich response is better? Answer with one word: A, B or tie.`;

/** The tokenizer's own chat_template for one user message, with the generation prompt (what HF apply_chat_template gives). */
function applyChatTemplate(dir: string, content: string): string {
  const cfg = JSON.parse(readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
  return new Jinja(cfg.chat_template).render({
    messages: [{ role: 'user', content }],
    add_generation_prompt: true,
    bos_token: cfg.bos_token ?? '',
    eos_token: cfg.eos_token ?? '',
  });
}

/** tokenizer.json's special added tokens, content -> id (Gemma also lists plain whitespace runs there). */
function specialTokens(dir: string): Map<string, number> {
  const json = JSON.parse(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
  const list = json.added_tokens as { content: string; id: number; special: boolean }[];
  return new Map(list.filter((t) => t.special).map((t) => [t.content, t.id]));
}

const row = (prompt: string[], responseA: string[], responseB: string[], id = 'r1'): ArenaRow => ({
  id,
  line: 2,
  prompt,
  responseA,
  responseB,
});

describe('templates: registry', () => {
  it('every template is family + layout data; an unknown name lists the known ones', () => {
    assert.throws(
      () => getTemplate('llama-3'),
      (e: Error) =>
        e instanceof TemplateError && e.message === `Unknown template: llama-3 (known: ${TEMPLATE_NAMES.join(', ')})`,
    );
    for (const n of [
      'gemma-chat',
      'llama3-chat',
      'chatml-chat',
      'mistral-chat',
      'plain',
      'judge',
      'gemma-judge',
      'llama3-judge',
      'chatml-judge',
      'mistral-judge',
    ])
      assert.equal(getTemplate(n).name, n);
    for (const n of TEMPLATE_NAMES) {
      const t = getTemplate(n);
      assert.equal(t.answers !== undefined, n.endsWith('-judge'), `${n}: answers only for causal-LM judges`);
    }
  });

  it('mistral: [INST] ... [/INST] after <s>; the judge ends at [/INST]', () => {
    const c = { prompt: ['P'], responseA: ['A1'], responseB: ['B1'] };
    assert.deepEqual(getTemplate('mistral-chat').begin, ['<s>']);
    assert.equal(renderText(getTemplate('mistral-chat'), c), `[INST] ${chatContent('P', 'A1', 'B1')} [/INST]`);
    assert.equal(renderText(getTemplate('mistral-judge'), c), `[INST] ${judgeContent('P', 'A1', 'B1')} [/INST]`);
  });

  it('multi-turn layouts number the turns and keep every turn once, in order', () => {
    const c = { prompt: ['P1', 'P2'], responseA: ['A1', 'A2'], responseB: ['B1'] };
    for (const n of TEMPLATE_NAMES) {
      const segs = getTemplate(n).render(c);
      const slots = segs.filter((s) => s.kind === 'slot').map((s) => (s.kind === 'slot' ? `${s.part}${s.turn}` : ''));
      assert.equal(new Set(slots).size, 6, n);
      if (n.endsWith('-chat')) assert.ok(renderText(getTemplate(n), c).includes('\n<response_b 2>\n'), n);
    }
  });
});

for (const fam of FAMILIES) {
  describe(`templates: real ${fam.name} tokenizer`, function () {
    this.timeout(180_000);
    let tok: ArenaTokenizer;
    let added: Map<string, number>;
    let rows: ArenaRow[];
    before(async () => {
      tok = loadTokenizer(fam.dir);
      added = specialTokens(fam.dir);
      rows = (await readRows(SAMPLE)).rows;
    });

    it('special tokens resolve by content to the ids in tokenizer.json added_tokens (and to the published ids)', () => {
      for (const name of [fam.chat, fam.judge, 'plain', 'judge']) {
        const b = bindTemplate(tok, name);
        for (const [content, id] of b.specialIds) {
          assert.equal(id, added.get(content), `${name}: ${content}`);
          if (content in fam.known) assert.equal(id, fam.known[content], `${name}: ${content}`);
        }
        assert.deepEqual(
          [...b.specialIds.keys()].sort(),
          [...getTemplate(name).specials, ...getTemplate(name).roles.map((r) => tok.roleTokens[r]!)].sort(),
        );
        // Declared = used: every added token the rendered text spells out is one the template names.
        const c = { prompt: ['P1', 'P2'], responseA: ['A1', 'A2'], responseB: ['B1', 'B2'] };
        const text = renderText(getTemplate(name), c, (r) => tok.roleTokens[r]!);
        for (const content of added.keys())
          if (text.includes(content))
            assert.ok(b.specialIds.has(content), `${name} spells ${content} but does not declare it`);
      }
      for (const content of Object.keys(fam.known))
        assert.ok(bindTemplate(tok, fam.chat).specialIds.has(content), `${fam.chat} uses ${content}`);
      console.log(
        `      ${fam.chat}: ${[...bindTemplate(tok, fam.chat).specialIds].map(([c, i]) => `${c}=${i}`).join(' ')}`,
      );
    });

    it("the chat and judge layouts decode to the model's own chat format (Llama-3.1, Qwen2.5: their chat_template); every special token is one id", () => {
      const p = 'What is 2+2?';
      const a = 'It is 4.';
      const b = 'Four, of course!';
      for (const [name, content] of [
        [fam.chat, chatContent(p, a, b)],
        [fam.judge, judgeContent(p, a, b)],
      ] as const) {
        const expected = fam.reference(content);
        const begin = bindTemplate(tok, name).beginIds;
        const beginText = tok.decode(begin);
        assert.ok(expected.startsWith(beginText), `${name}: the format starts with ${beginText}`);
        const ids = Array.from(encodeRow(tok, row([p], [a], [b]), { template: name, maxTokens: 1024, swap: false }));
        assert.deepEqual(ids.slice(0, begin.length), begin);
        assert.equal(tok.decode(ids.slice(begin.length)), expected.slice(beginText.length), name);
        if (fam.joinedIdsEqual)
          assert.deepEqual(
            ids,
            [...begin, ...tok.encode(expected.slice(beginText.length))],
            `${name}: ids of the whole string`,
          );
        // Special ids: the same sequence as tokenizing the reference string whole, and one per marker in the text.
        const specialIds = new Set(added.values());
        const ours = ids.filter((i) => specialIds.has(i));
        assert.deepEqual(
          ours,
          tok.encode(expected).filter((i) => specialIds.has(i)),
          name,
        );
        const contents = [...added.keys()]
          .sort((x, y) => y.length - x.length)
          .map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
        const markers = (expected.match(new RegExp(contents.join('|'), 'g')) ?? []).map((m) => added.get(m));
        assert.deepEqual(ours, markers, `${name}: one id per marker in the text`);
        console.log(
          `      ${name}: ${ids.length} ids, specials [${ours.join(', ')}]${fam.joinedIdsEqual ? ', = ids of the whole string' : ''}`,
        );
      }
    });

    it('judge: the prompt ends where the label is the next token (A, B, tie each one id)', () => {
      const t = getTemplate(fam.judge);
      assert.deepEqual(
        t.answers,
        ['A', 'B', 'tie'].map((w) => fam.answerLead + w),
      );
      const r = row(['Which is heavier, a kilo of feathers or a kilo of steel?'], ['Steel.'], ['They weigh the same.']);
      const b = bindTemplate(tok, fam.judge);
      const ids = Array.from(encodeRow(tok, r, { template: fam.judge, maxTokens: 1024, swap: false }));
      const text = tok.decode(ids.slice(0, b.beginIds.length)) + tok.decode(ids.slice(b.beginIds.length));
      const labelIds = t.answers!.map((ans) => {
        const one = tok.encodeAfter(ans);
        assert.equal(one.length, 1, `${JSON.stringify(ans)} is one token`);
        // Tokenizing prompt + label whole ends in exactly that one id after the prompt's own tokens.
        const whole = tok.encode(text + ans);
        assert.deepEqual(
          whole.slice(0, -1),
          tok.encode(text),
          `${fam.judge}: nothing merges across the end of the prompt`,
        );
        assert.equal(whole[whole.length - 1], one[0]);
        return one[0];
      });
      assert.equal(new Set(labelIds).size, 3);
      assert.deepEqual(judgeAnswerIds(tok, fam.judge), labelIds, 'judgeAnswerIds gives the same ids');
      console.log(
        `      ${fam.judge}: label ids A,B,tie = ${labelIds.join(',')}; prompt ends ${JSON.stringify(text.slice(-24))}`,
      );
    });

    it('head+tail truncation keeps the head and tail of a long response, the markers whole, and fits maxTokens', () => {
      const long = Array.from({ length: 30_000 }, (_, i) => `tok${i}`).join(' ') + ' THE_END';
      const r = row(['Summarise this.'], [long], ['Short answer.']);
      for (const name of [fam.chat, fam.judge, 'plain', 'judge']) {
        const b = bindTemplate(tok, name);
        const ids = encodeRow(tok, r, { template: name, maxTokens: 512, swap: false });
        assert.ok(ids.length <= 512 && ids.length >= 500, `${name}: ${ids.length}`);
        assert.deepEqual(Array.from(ids.slice(0, b.beginIds.length)), b.beginIds);
        const text = tok.decode(ids);
        assert.ok(text.includes('tok0 tok1 tok2') && text.includes('tok29999 THE_END'), `${name}: head and tail kept`);
        assert.ok(text.includes('Summarise this.') && text.includes('Short answer.'), `${name}: short parts whole`);
        // A one-token response ('x'; ' x' after plain's lead): an empty one would let the markers around it merge.
        const short = encodeRow(tok, row(['Summarise this.'], ['x'], ['Short answer.']), {
          template: name,
          maxTokens: 512,
          swap: false,
        });
        // The same template text around the cut response: the specials sit in the same order.
        const specials = new Set(b.specialIds.values());
        assert.deepEqual(
          Array.from(ids).filter((i) => specials.has(i)),
          Array.from(short).filter((i) => specials.has(i)),
          name,
        );
        // The kept response tokens are exactly keepHeadTail of its full tokenization.
        const lead = name === 'plain' ? ' ' : '';
        const fullA = tok.encodeAfter(lead + long);
        const n = ids.length - (short.length - 1);
        const start = Array.from(ids).indexOf(fullA[0]);
        assert.deepEqual(Array.from(ids.slice(start, start + n)), keepHeadTail(fullA, n), name);
      }
    });

    it("pre-cut of a 200,000-character text equals the full tokenization's head and tail", () => {
      const r = rng(7);
      const text = Array.from({ length: 40_000 }, (_, i) => (i % 53 === 0 ? '.\n' : '') + `w${Math.floor(r() * 1e6)}`)
        .join(' ')
        .slice(0, 200_000);
      const full = tok.encode(text);
      for (const cap of [1, 100, 2000])
        assert.deepEqual(
          encodeCapped(tok, text, cap),
          full.slice(0, cap).concat(full.slice(full.length - cap)),
          `cap ${cap}`,
        );
      console.log(
        `      ${full.length} ids; ${tok.hardBoundaries ? 'hard boundaries hold: exact cuts, cached chunks' : 'no hard boundaries: cuts absorbed by the slack tokens'}`,
      );
    });

    it('swap exchanges A and B exactly, also when both are cut', () => {
      const words = (tag: string, n: number) => Array.from({ length: n }, (_, i) => `${tag}${i}`).join(' ');
      const r = row(['Compare.'], [words('alpha', 900)], [words('beta', 700)]);
      for (const name of [fam.chat, fam.judge]) {
        const markers =
          name === fam.chat
            ? ['\n<response_a>\n', '\n<response_b>\n']
            : ['\n\n### Assistant A\n', '\n\n### Assistant B\n'];
        const split = (ids: Int32Array) => {
          const s = tok.decode(ids);
          const ia = s.indexOf(markers[0]);
          const ib = s.indexOf(markers[1]);
          return { before: s.slice(0, ia), a: s.slice(ia + markers[0].length, ib), b: s.slice(ib + markers[1].length) };
        };
        const opts = { template: name, maxTokens: 400 };
        // The text after B (closing, markers), read off a row whose B is empty.
        const closing = split(encodeRow(tok, row(['Compare.'], ['x'], ['']), { ...opts, swap: false })).b;
        const body = (s: string) => {
          assert.ok(s.endsWith(closing), `${name}: ends with the closing`);
          return s.slice(0, s.length - closing.length);
        };
        const x = split(encodeRow(tok, r, { ...opts, swap: false }));
        const y = split(encodeRow(tok, r, { ...opts, swap: true }));
        assert.ok(
          x.a.startsWith('alpha0 alpha1') && x.a.endsWith('alpha898 alpha899') && x.a.length < r.responseA[0].length,
          `${name}: A cut, head and tail kept`,
        );
        assert.ok(
          body(x.b).startsWith('beta0 beta1') &&
            body(x.b).endsWith('beta698 beta699') &&
            body(x.b).length < r.responseB[0].length,
          `${name}: B cut`,
        );
        assert.equal(y.before, x.before);
        assert.equal(y.a, body(x.b), `${name}: swapped A = original B`);
        assert.equal(body(y.b), x.a, `${name}: swapped B = original A`);
        console.log(
          `      ${name}: kept ${x.a.length} of ${r.responseA[0].length} chars of A, ${body(x.b).length} of ${r.responseB[0].length} of B; swap exchanges them exactly`,
        );
      }
    });

    it('sample rows: <= maxTokens, swap = the swapped row, untruncated rows decode to begin + rendered text', () => {
      let untruncated = 0;
      let total = 0;
      for (const maxTokens of [128, 1024]) {
        for (const name of [fam.chat, fam.judge, 'plain', 'judge']) {
          const b = bindTemplate(tok, name);

          for (const r of rows.slice(0, 40)) {
            const x = encodeRowInfo(tok, r, { template: name, maxTokens, swap: false });
            assert.ok(x.ids.length <= maxTokens, `row ${r.id} ${name} ${maxTokens}: ${x.ids.length}`);
            const y = encodeRow(tok, r, { template: name, maxTokens, swap: true });
            assert.deepEqual(
              y,
              encodeRow(
                tok,
                { ...r, responseA: r.responseB, responseB: r.responseA },
                { template: name, maxTokens, swap: false },
              ),
            );
            total++;
            if (!x.truncated) {
              untruncated++;
              assert.deepEqual(Array.from(x.ids.slice(0, b.beginIds.length)), b.beginIds);
              const rendered = renderText(getTemplate(name), r, (role) => tok.roleTokens[role]!) + tok.decode(b.endIds);
              assert.equal(tok.decode(x.ids.slice(b.beginIds.length)), rendered, `row ${r.id} ${name}`);
            }
          }
        }
      }
      console.log(`      ${untruncated} of ${total} encodings untruncated (checked by decoding)`);
      assert.ok(untruncated > 100);
    });

    it('only a tokenizer that marks the start of a text has a distinct continuation encoding', () => {
      const prepends = fam.chat === 'mistral-chat';
      assert.equal(tok.encodeAfter === tok.encode, !prepends);
      if (prepends) {
        // '▁Hello' at the start of a text, 'Hello' after other text; both read back the same.
        assert.notDeepEqual(tok.encode('Hello'), tok.encodeAfter('Hello'));
        assert.deepEqual(tok.encode('Say Hello'), [...tok.encode('Say'), ...tok.encodeAfter(' Hello')]);
      }
    });

    it("plain ends with this tokenizer's own EOS and the BOS its post-processor adds", () => {
      const ids = Array.from(
        encodeRow(tok, row(['p'], ['a'], ['b']), { template: 'plain', maxTokens: 64, swap: false }),
      );
      assert.equal(ids[ids.length - 1], added.get(tok.roleTokens.eos!));
      assert.deepEqual(ids.slice(0, tok.prefixIds.length), tok.prefixIds);
      console.log(`      plain: eos ${tok.roleTokens.eos} = ${ids[ids.length - 1]}, prefix [${tok.prefixIds}]`);
    });
  });
}

describe('templates: a template the tokenizer cannot run fails at load', function () {
  this.timeout(120_000);
  const [llama, qwen, llama2] = FAMILIES.map((f) => f.dir);

  it('names the missing special token, the template and the templates that fit', () => {
    const toks = new Map([llama, qwen, llama2].map((d) => [d, loadTokenizer(d)]));
    const cases: [string, string, string][] = [
      [qwen, 'llama3-chat', '<|begin_of_text|>'],
      [llama, 'chatml-judge', '<|im_start|>'],
      [llama, 'gemma-chat', '<bos>'],
      [qwen, 'mistral-chat', '<s>'],
      [llama2, 'llama3-judge', '<|begin_of_text|>'],
    ];
    for (const [dir, name, token] of cases) {
      assert.throws(
        () => bindTemplate(toks.get(dir)!, name),
        (e: Error) =>
          e instanceof TemplateError &&
          e.message.startsWith(
            `template ${name} needs the special token ${token}, which ${dir}/tokenizer.json does not have among its added_tokens`,
          ) &&
          /templates this tokenizer has the special tokens for: .*plain/.test(e.message),
        `${name} on ${dir}`,
      );
    }
    // At load: loadTokenizer(dir, template) binds it.
    assert.throws(
      () => loadTokenizer(qwen, 'llama3-chat'),
      (e: Error) =>
        e instanceof TemplateError &&
        e.message ===
          `template llama3-chat needs the special token <|begin_of_text|>, which ${qwen}/tokenizer.json does not have among its added_tokens; ` +
            'templates this tokenizer has the special tokens for: plain, judge, chatml-chat, chatml-judge, notebook, notebook-parts',
    );
    assert.throws(() => loadTokenizer(qwen, 'nope'), /^TemplateError: Unknown template: nope \(known: gemma-chat, /);
    assert.deepEqual(loadTokenizer(qwen, 'chatml-judge').prefixIds, []);
  });

  it('judgeAnswerIds: an answer of several tokens, or a template that is no judge, is an error naming it', () => {
    const d = mkdtempSync(path.join(tmpdir(), 'arenakit-tpl-'));
    try {
      writeByteTokenizer(d); // its small vocabulary spells 'tie' as 'ti' + 'e'
      const tok = loadTokenizer(d, 'gemma-judge');
      assert.throws(
        () => judgeAnswerIds(tok, 'gemma-judge'),
        (e: Error) =>
          e instanceof TemplateError && e.message.startsWith('template gemma-judge: the answer "tie" is 2 tokens'),
      );
      assert.throws(
        () => judgeAnswerIds(tok, 'gemma-chat'),
        /template gemma-chat is not a causal-LM judge \(those are: gemma-judge, llama3-judge, chatml-judge, mistral-judge\)/,
      );
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('a role token the tokenizer config does not set is an error naming it', () => {
    const d = mkdtempSync(path.join(tmpdir(), 'arenakit-tpl-'));
    try {
      copyFileSync(path.join(qwen, 'tokenizer.json'), path.join(d, 'tokenizer.json'));
      const cfg = JSON.parse(readFileSync(path.join(qwen, 'tokenizer_config.json'), 'utf8'));
      delete cfg.eos_token;
      writeFileSync(path.join(d, 'tokenizer_config.json'), JSON.stringify(cfg));
      assert.throws(
        () => loadTokenizer(d, 'plain'),
        (e: Error) =>
          e instanceof TemplateError &&
          e.message.includes(
            `template plain needs the tokenizer's eos_token, which ${d}/tokenizer_config.json does not set`,
          ),
      );
      assert.ok(loadTokenizer(d, 'chatml-chat'));
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
