// `runner.cjs tokens`: the exact ids a weights directory's model receives for each row (its manifest's
// recipe: template, truncation, N), one JSON line per row in input order; `--check REF.jsonl` compares
// them with ids a user's training code wrote and names the first difference.
import { readFileSync } from 'node:fs';
import { readRows } from '../../data/rows';
import { encodeRow, loadTokenizer } from '../../format/encode';
import { compareIds, describeDifference, type IdsRow } from '../../format/ids-check';
import { getRecipe } from '../../format/templates';
import { writeFileAtomic } from '../../util/files';
import { readManifest } from '../../weights/manifest';
import { need, parse, UsageError } from '../args';

const USAGE = `usage: node runner.cjs tokens --data test.csv|test.parquet --weights DIR [--swap] --out ids.jsonl [--check REF.jsonl]
  writes one line per row, in input order: {"id": ..., "input_ids": [...]}, exactly what the model receives
  (the weights directory's recipe: template, truncation, max tokens); --swap: the swapped TTA pass (responses exchanged)
  --check REF.jsonl: lines {"id": ..., "input_ids": [...]} from your training code; prints the first difference
  (row id, position, both tokens decoded) and exits 1 when any row differs`;

/** REF.jsonl -> id -> ids; a malformed line is an error naming it. */
function readReference(path: string): Map<string, number[]> {
  const out = new Map<string, number[]>();
  readFileSync(path, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      if (!line.trim()) return;
      let j: { id?: unknown; input_ids?: unknown };
      try {
        j = JSON.parse(line);
      } catch (e) {
        throw new UsageError(
          `${path}:${i + 1}: not JSON (${(e as Error).message}); each line must be {"id": ..., "input_ids": [...]}`,
        );
      }
      if (j.id === undefined || !Array.isArray(j.input_ids) || !j.input_ids.every((x) => Number.isInteger(x)))
        throw new UsageError(`${path}:${i + 1}: needs "id" and "input_ids" (a list of integer token ids)`);
      out.set(String(j.id), j.input_ids as number[]);
    });
  return out;
}

export async function run(argv: string[]): Promise<void> {
  const v = parse(
    argv,
    {
      data: { type: 'string' },
      weights: { type: 'string' },
      swap: { type: 'boolean' },
      out: { type: 'string' },
      check: { type: 'string' },
    },
    USAGE,
  );
  const data = need(v.data, '--data', USAGE);
  const dir = need(v.weights, '--weights', USAGE);
  const out = need(v.out, '--out', USAGE);
  const m = readManifest(dir);
  if (m.kind !== 'neural') throw new UsageError(`${dir}: a ${m.kind} model reads no token ids`);
  const recipe = getRecipe(m.template, m.truncation);
  const tok = loadTokenizer(dir, m.template);
  const reference = typeof v.check === 'string' ? readReference(v.check) : null;
  const { rows, warnings } = await readRows(data);
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
  const ours: IdsRow[] = [];
  const lines: string[] = [];
  let failed = 0;
  for (const row of rows) {
    let ids: number[] | null = null;
    try {
      ids = Array.from(
        encodeRow(tok, row, { template: m.template, truncation: m.truncation, maxTokens: m.maxTokens, swap: !!v.swap }),
      );
    } catch (e) {
      failed++;
      process.stderr.write(`warning: ${(e as Error).message}; the runner gives this row the uniform prediction\n`);
    }
    ours.push({ id: row.id, inputIds: ids });
    lines.push(JSON.stringify({ id: row.id, input_ids: ids }));
  }
  writeFileAtomic(out, lines.join('\n') + '\n');
  process.stderr.write(
    `tokens: ${rows.length} rows of ${data} -> ${out} (template ${m.template}, truncation ${recipe.truncation}, max tokens ${m.maxTokens}${v.swap ? ', swapped' : ''})\n`,
  );
  const summary: Record<string, unknown> = {
    rows: rows.length,
    out,
    template: m.template,
    truncation: recipe.truncation,
    max_tokens: m.maxTokens,
    swap: !!v.swap,
    failed_rows: failed,
  };
  if (reference) {
    const c = compareIds(ours, reference);
    const decode = (id: number) => tok.decode([id]);
    for (const d of c.differing.slice(0, 5)) process.stderr.write(`tokens --check: ${describeDifference(d, decode)}\n`);
    if (c.missing.length)
      process.stderr.write(
        `tokens --check: ${c.missing.length} row(s) not in ${v.check}: ${c.missing.slice(0, 5).join(', ')}\n`,
      );
    process.stderr.write(`tokens --check: ${c.differing.length} of ${c.rows} rows differ from ${v.check}\n`);
    Object.assign(summary, {
      differing_rows: c.differing.length,
      missing_rows: c.missing.length,
      first_difference: c.differing[0] ? describeDifference(c.differing[0], decode) : null,
    });
    process.stdout.write(JSON.stringify(summary) + '\n');
    if (c.differing.length || c.missing.length) process.exitCode = 1;
    return;
  }
  process.stdout.write(JSON.stringify(summary) + '\n');
}
