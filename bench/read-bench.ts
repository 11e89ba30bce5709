// `npm run bench -- --only read`: reading competition files (src/data/rows.ts), each in a fresh
// child process whose peak RSS is its own VmHWM: Kaggle-sized test CSVs (the sample rows resampled
// with fresh ids, bench/make-synthetic.ts) at 1k / 5k / 25k rows, so memory growth is visible as a
// slope per row, one 30 MB cell (issue 9: it used to hang), the WSDM sample parquet and the 25,000
// test rows as parquet (one row group, and 5,000-row groups).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { readRows } from '../src/data/rows';
import { makeTestCsv, makeTestParquet, SAMPLE_CSV } from './make-synthetic';

/** Environment variable that turns a bench process into one measured read of the named file. */
export const READ_CHILD_ENV = 'ARENAKIT_READ_CHILD';

function vmHwmMb(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** The child's side: read the file (or nothing, for the baseline) and print one JSON line. */
export async function readChild(file: string): Promise<void> {
  const t0 = process.hrtime.bigint();
  const r = file === '-' ? { rows: [], warnings: [] } : await readRows(file);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ rows: r.rows.length, seconds, peak_rss_mb: vmHwmMb(), warnings: r.warnings.length }));
}

interface Measured {
  rows: number;
  seconds: number;
  peak_rss_mb: number;
  warnings: number;
}

function measure(file: string): Measured {
  const out = execFileSync(process.execPath, [...process.execArgv, process.argv[1]], {
    env: { ...process.env, [READ_CHILD_ENV]: file },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return JSON.parse(out.trim().split('\n').pop()!);
}

/** A test CSV with one response of `mb` MB of real sample text (JSON-quoted as pandas writes it) and one normal row. */
function bigCellCsv(file: string, mb: number): void {
  const text = readFileSync(SAMPLE_CSV, 'utf8');
  let long = '';
  while (long.length < mb * 1e6) long += text.slice(0, 1e6);
  long = long.slice(0, mb * 1e6);
  const q = (s: string) => `"${JSON.stringify([s]).replace(/"/g, '""')}"`;
  writeFileSync(
    file,
    `id,prompt,response_a,response_b\n1,${q('p')},${q(long)},${q('b')}\n2,${q('p')},${q('a')},${q('b')}\n`,
  );
}

export async function readBench(): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), 'arenakit-read-bench-'));
  const out: Record<string, unknown> = {};
  try {
    out.baseline_process = measure('-');
    for (const n of [1000, 5000, 25000]) {
      const f = join(dir, `test-${n}.csv`);
      makeTestCsv(f, n, 1);
      const m = measure(f);
      out[`csv_${n}_rows`] = {
        file_mb: Number((statSync(f).size / 1e6).toFixed(1)),
        ...m,
        mb_per_s: Number((statSync(f).size / 1e6 / m.seconds).toFixed(1)),
      };
    }
    const big = join(dir, 'cell-30mb.csv');
    bigCellCsv(big, 30);
    out.csv_one_30mb_cell = { file_mb: Number((statSync(big).size / 1e6).toFixed(1)), ...measure(big) };
    const pq = resolve(__dirname, '..', '..', 'shared', 'data', 'wsdm-sample-test.parquet');
    out.parquet_wsdm_sample_704_rows = measure(pq);
    // The 25,000 CSV rows as parquet: one row group (as pyarrow writes a file this size) and 5,000-row groups.
    for (const [name, group] of [
      ['parquet_25000_rows_1_group', undefined],
      ['parquet_25000_rows_5000_per_group', 5000],
    ] as const) {
      const f = join(dir, `${name}.parquet`);
      makeTestParquet(f, 25_000, 1, group);
      out[name] = { file_mb: Number((statSync(f).size / 1e6).toFixed(1)), ...measure(f) };
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}
