// The Kaggle simulation's helpers (tests/kaggle.test.ts, tests/kaggle-adapter.test.ts): child processes,
// a notebook's code cells as one script, CSV parsing and the submission checks Kaggle would apply.
import { strict as assert } from 'node:assert';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

export function newestMtime(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return t;
}

export function sh(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeout?: number } = {},
): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: opts.timeout ?? 300_000, maxBuffer: 64 << 20, ...opts });
  if (r.error) throw r.error;
  return r;
}

export function must(r: SpawnSyncReturns<string>, what: string): string {
  assert.equal(r.status, 0, `${what} failed (status ${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** Code cells of a notebook, in order, joined into one script (what "Run all" executes). */
export function notebookScript(path: string): string {
  const nb = JSON.parse(readFileSync(path, 'utf8')) as { cells: { cell_type: string; source: string[] | string }[] };
  return nb.cells
    .filter((c) => c.cell_type === 'code')
    .map((c) => (Array.isArray(c.source) ? c.source.join('') : c.source))
    .join('\n\n');
}

/** Minimal CSV split (RFC 4180 quotes) for checking the submission and writing fixtures. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let q = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (q) {
      if (ch === '"' && text[i + 1] === '"') ((cell += '"'), i++);
      else if (ch === '"') q = false;
      else cell += ch;
    } else if (ch === '"') q = true;
    else if (ch === ',') (row.push(cell), (cell = ''));
    else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      (row.push(cell), rows.push(row), (row = []), (cell = ''));
    } else cell += ch;
  }
  if (cell !== '' || row.length) (row.push(cell), rows.push(row));
  return rows;
}

const csvCell = (s: string) => (/[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
export const toCsv = (rows: string[][]) => rows.map((r) => r.map(csvCell).join(',')).join('\n') + '\n';

/** Checks a WSDM submission: id,winner, every id in order, only model_a / model_b. */
export function checkWsdmSubmission(path: string, ids: string[]): void {
  const rows = parseCsv(readFileSync(path, 'utf8')).filter((r) => r.length > 1 || r[0] !== '');
  assert.deepEqual(rows[0], ['id', 'winner']);
  assert.deepEqual(
    rows.slice(1).map((r) => r[0]),
    ids,
    'ids in test.parquet order',
  );
  const winners = rows.slice(1).map((r) => r[1]);
  assert.ok(
    winners.every((w) => w === 'model_a' || w === 'model_b'),
    `winners: ${[...new Set(winners)].join(', ')}`,
  );
  console.log(
    `      ${path}: ${ids.length} rows, model_a ${winners.filter((w) => w === 'model_a').length}, model_b ${winners.filter((w) => w === 'model_b').length}`,
  );
}

/** Checks a Kaggle submission: header, row count, ids in order, probabilities in [0, 1] summing to 1. */
export function checkSubmission(path: string, ids: string[]): void {
  const rows = parseCsv(readFileSync(path, 'utf8')).filter((r) => r.length > 1 || r[0] !== '');
  assert.deepEqual(rows[0], ['id', 'winner_model_a', 'winner_model_b', 'winner_tie']);
  assert.equal(rows.length - 1, ids.length, 'one submission row per test row');
  assert.deepEqual(
    rows.slice(1).map((r) => r[0]),
    ids,
    'ids in test.csv order',
  );
  let maxDev = 0;
  for (const r of rows.slice(1)) {
    const p = r.slice(1).map(Number);
    assert.equal(p.length, 3);
    for (const x of p) assert.ok(Number.isFinite(x) && x >= 0 && x <= 1, `row ${r[0]}: probability ${x}`);
    maxDev = Math.max(maxDev, Math.abs(p[0] + p[1] + p[2] - 1));
  }
  console.log(`      ${path}: ${ids.length} rows; max |row sum - 1| = ${maxDev.toExponential(2)} (tolerance 1e-5)`);
  assert.ok(maxDev < 1e-5);
}
