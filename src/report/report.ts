// One self-contained HTML report of predictions against labels: summary, confusion matrix, reliability
// diagram, loss by length bucket, position bias (swap) and verbosity bias (length difference).
// Inline SVG and CSS only, no scripts or network. Every panel is a <section class="panel" id="report-...">
// so tests and readers can find them; a panel whose input is missing says so instead of vanishing.
// The columns are the task's (src/task/task.ts): three for LMSYS, two for WSDM, whose report adds
// accuracy per language (the task metric by the file's `language` column).
import { swapColumns, type Task } from '../task/task';
import { accuracyByGroup, argmaxRow, rowLogLoss } from '../metrics/metrics';

export interface ReportInput {
  /** The task of the rows: its columns are the probability columns. */
  task: Task;
  /** Flat [n*k] probabilities, the task's column order. */
  probs: Float64Array;
  labels: ArrayLike<number>;
  /** Raw output of the swapped pass (prompt, B, A): its column 0 is P(B wins) in the original terms. */
  swappedProbs?: Float64Array;
  /** Characters of prompt + both responses per row (loss by length bucket). */
  lengths?: ArrayLike<number>;
  /** Characters of A minus characters of B per row (verbosity bias). */
  lengthDiff?: ArrayLike<number>;
  /** The `language` cell per row (WSDM files): accuracy per language. */
  languages?: readonly (string | undefined)[];
  title?: string;
}

export const REPORT_PANELS = [
  'report-summary',
  'report-confusion',
  'report-reliability',
  'report-length',
  'report-position',
  'report-verbosity',
] as const;
/** The extra panel of a task scored by accuracy (WSDM). */
export const LANGUAGE_PANEL = 'report-language';

const SHORT_OF = { a: 'A wins', b: 'B wins', tie: 'tie' } as const;
const COLORS = ['#1f77b4', '#d62728', '#7f7f7f'];

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const f4 = (x: number) => (Number.isFinite(x) ? x.toFixed(4) : 'n/a');

/** Indices of rows split into `k` equal-count buckets by `key`. */
function quantileBuckets(key: ArrayLike<number>, k: number): number[][] {
  const order = Array.from({ length: key.length }, (_, i) => i).sort((a, b) => key[a] - key[b] || a - b);
  const out: number[][] = [];
  for (let b = 0; b < k; b++) {
    const part = order.slice(Math.floor((b * order.length) / k), Math.floor(((b + 1) * order.length) / k));
    if (part.length) out.push(part);
  }
  return out;
}

interface Series {
  name: string;
  color: string;
  points: [number, number][];
  kind: 'line' | 'dots' | 'bars';
}

/** A small x/y chart; `diagonal` draws y = x (reliability, swap agreement). */
function chart(opts: {
  id: string;
  xLabel: string;
  yLabel: string;
  x: [number, number];
  y: [number, number];
  series: Series[];
  diagonal?: boolean;
  xTicks?: string[];
}): string {
  const W = 420,
    H = 280,
    L = 52,
    R = 12,
    T = 12,
    B = 42;
  const sx = (v: number) => L + ((v - opts.x[0]) / (opts.x[1] - opts.x[0] || 1)) * (W - L - R);
  const sy = (v: number) => H - B - ((v - opts.y[0]) / (opts.y[1] - opts.y[0] || 1)) * (H - T - B);
  const parts: string[] = [
    `<svg class="chart" id="${opts.id}" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" xmlns="http://www.w3.org/2000/svg">`,
  ];
  parts.push(`<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="#fafafa" stroke="#ccc"/>`);
  for (let t = 0; t <= 4; t++) {
    const yv = opts.y[0] + ((opts.y[1] - opts.y[0]) * t) / 4;
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${sy(yv).toFixed(1)}" y2="${sy(yv).toFixed(1)}" stroke="#e5e5e5"/>`);
    parts.push(
      `<text x="${L - 4}" y="${(sy(yv) + 4).toFixed(1)}" text-anchor="end" class="tick">${yv.toFixed(2)}</text>`,
    );
    if (!opts.xTicks) {
      const xv = opts.x[0] + ((opts.x[1] - opts.x[0]) * t) / 4;
      parts.push(
        `<text x="${sx(xv).toFixed(1)}" y="${H - B + 14}" text-anchor="middle" class="tick">${Math.abs(xv) >= 1000 ? xv.toFixed(0) : xv.toFixed(2)}</text>`,
      );
    }
  }
  opts.xTicks?.forEach((lab, j) => {
    const xv = opts.x[0] + ((j + 0.5) * (opts.x[1] - opts.x[0])) / opts.xTicks!.length;
    parts.push(`<text x="${sx(xv).toFixed(1)}" y="${H - B + 14}" text-anchor="middle" class="tick">${esc(lab)}</text>`);
  });
  if (opts.diagonal)
    parts.push(
      `<line class="diagonal" x1="${sx(opts.x[0])}" y1="${sy(opts.y[0])}" x2="${sx(opts.x[1])}" y2="${sy(opts.y[1])}" stroke="#999" stroke-dasharray="4 3"/>`,
    );
  opts.series.forEach((s, k) => {
    if (s.kind === 'line' && s.points.length)
      parts.push(
        `<polyline class="series" fill="none" stroke="${s.color}" stroke-width="2" points="${s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')}"/>`,
      );
    if (s.kind !== 'bars')
      for (const [x, y] of s.points)
        parts.push(
          `<circle class="point" cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="${s.kind === 'dots' ? 1.8 : 3}" fill="${s.color}" fill-opacity="${s.kind === 'dots' ? 0.45 : 1}"/>`,
        );
    else {
      const bw = ((W - L - R) / Math.max(s.points.length, 1)) * 0.7;
      for (const [x, y] of s.points)
        parts.push(
          `<rect class="bar" x="${(sx(x) - bw / 2).toFixed(1)}" y="${sy(y).toFixed(1)}" width="${bw.toFixed(1)}" height="${(sy(opts.y[0]) - sy(y)).toFixed(1)}" fill="${s.color}"/>`,
        );
    }
    parts.push(`<text x="${L + 8}" y="${T + 16 + 14 * k}" fill="${s.color}" class="legend">${esc(s.name)}</text>`);
  });
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 8}" text-anchor="middle" class="axis">${esc(opts.xLabel)}</text>`);
  parts.push(
    `<text x="14" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 14 ${(T + H - B) / 2})" class="axis">${esc(opts.yLabel)}</text>`,
  );
  parts.push('</svg>');
  return parts.join('');
}

const panel = (id: string, title: string, body: string) =>
  `<section class="panel" id="${id}"><h2>${esc(title)}</h2>${body}</section>`;
const missing = (what: string) => `<p class="missing">Not available: ${esc(what)}</p>`;

/** One bar per value (named by its tick), y from 0 to yMax; the series is named after the y axis. */
function barChart(
  id: string,
  xLabel: string,
  yLabel: string,
  values: number[],
  xTicks: string[],
  yMax: number,
): string {
  const points = values.map((v, j): [number, number] => [j + 0.5, v]);
  return chart({
    id,
    xLabel,
    yLabel,
    x: [0, values.length],
    y: [0, yMax],
    series: [{ name: yLabel, color: COLORS[0], points, kind: 'bars' }],
    xTicks,
  });
}

export function renderReport(input: ReportInput): string {
  const { probs, labels } = input;
  const task = input.task;
  const K = task.labels.length;
  const cls = Array.from({ length: K }, (_, c) => c);
  const SHORT = task.outcomes.map((o) => SHORT_OF[o]);
  const argmax = (p: Float64Array, i: number) => argmaxRow(p, i, K);
  const n = labels.length;
  if (probs.length !== n * K) throw new RangeError(`report: ${probs.length / K} probability rows for ${n} labels`);
  const losses = Float64Array.from({ length: n }, (_, i) => rowLogLoss(probs, i, labels[i], K));
  const meanLoss = losses.reduce((a, b) => a + b, 0) / n;
  const cm = new Array<number>(K * K).fill(0);
  for (let i = 0; i < n; i++) cm[labels[i] * K + argmax(probs, i)]++;
  const acc = cls.reduce((s, c) => s + cm[c * K + c], 0) / n;
  const share = cls.map((c) => Array.from(labels).filter((y) => y === c).length / n);
  const priorLoss = -share.reduce((s, q) => s + (q > 0 ? q * Math.log(q) : 0), 0);
  const meanP = cls.map((c) => probs.filter((_, j) => j % K === c).reduce((a, b) => a + b, 0) / n);
  const names = SHORT.map((x) => x.replace(' wins', '')).join(' / ');
  const lossRow = `<tr><th>${K === 2 ? 'log loss (binary)' : 'log loss'}</th><td id="metric-logloss" data-value="${meanLoss}">${f4(meanLoss)}</td></tr>`;
  const accRow = `<tr><th>accuracy</th><td id="metric-accuracy" data-value="${acc}">${f4(acc)}</td></tr>`;

  const summary = panel(
    'report-summary',
    'Summary',
    `<table class="metrics"><tr><th>rows</th><td id="metric-rows">${n}</td></tr>` +
      // The task's metric first.
      (task.metric.name === 'accuracy' ? accRow + lossRow : lossRow + accRow) +
      `<tr><th>class-share baseline log loss</th><td id="metric-prior">${f4(priorLoss)}</td></tr>` +
      `<tr><th>label shares (${names})</th><td>${share.map(f4).join(' / ')}</td></tr>` +
      `<tr><th>mean predicted (${names})</th><td>${meanP.map(f4).join(' / ')}</td></tr></table>`,
  );

  const maxCell = Math.max(...cm, 1);
  const confusion = panel(
    'report-confusion',
    'Confusion matrix (rows: label, columns: argmax prediction)',
    `<table class="confusion"><tr><th></th>${SHORT.map((s) => `<th>${s}</th>`).join('')}</tr>` +
      cls
        .map(
          (y) =>
            `<tr><th>${SHORT[y]}</th>${cls
              .map(
                (k) =>
                  `<td class="cm-cell" data-label="${y}" data-pred="${k}" style="background: rgba(31,119,180,${(cm[y * K + k] / maxCell).toFixed(3)})">${cm[y * K + k]}</td>`,
              )
              .join('')}</tr>`,
        )
        .join('') +
      '</table>',
  );

  // Reliability: per class, 10 equal-width bins of predicted probability vs observed frequency.
  const rel: Series[] = cls.map((c) => {
    const sp = new Float64Array(10),
      sy = new Float64Array(10),
      cnt = new Float64Array(10);
    for (let i = 0; i < n; i++) {
      const p = probs[i * K + c];
      const b = Math.min(9, Math.floor(p * 10));
      sp[b] += p;
      sy[b] += labels[i] === c ? 1 : 0;
      cnt[b]++;
    }
    const points: [number, number][] = [];
    for (let b = 0; b < 10; b++) if (cnt[b] > 0) points.push([sp[b] / cnt[b], sy[b] / cnt[b]]);
    return { name: task.labels[c], color: COLORS[c], points, kind: 'line' };
  });
  const reliability = panel(
    'report-reliability',
    'Reliability diagram',
    chart({
      id: 'chart-reliability',
      xLabel: 'predicted probability',
      yLabel: 'observed frequency',
      x: [0, 1],
      y: [0, 1],
      series: rel,
      diagonal: true,
    }),
  );

  let lengthBody = missing('text lengths (pass `lengths`)');
  if (input.lengths && input.lengths.length === n) {
    const buckets = quantileBuckets(input.lengths, 5);
    const loss = buckets.map((b) => b.reduce((s, i) => s + losses[i], 0) / b.length);
    const ticks = buckets.map((b) => `≤${Math.round(input.lengths![b[b.length - 1]])}`);
    lengthBody =
      barChart(
        'chart-length',
        'text length bucket (characters, quintiles)',
        'log loss',
        loss,
        ticks,
        Math.max(1.2, ...loss),
      ) +
      `<table class="length-table"><tr><th>bucket</th><th>rows</th><th>log loss</th></tr>${buckets.map((b, j) => `<tr><td>${esc(ticks[j])}</td><td>${b.length}</td><td>${f4(loss[j])}</td></tr>`).join('')}</table>`;
  }
  const lengthPanel = panel('report-length', 'Log loss by length bucket', lengthBody);

  let positionBody = missing('swapped-pass probabilities (pass `swappedProbs`)');
  if (input.swappedProbs && input.swappedProbs.length === n * K) {
    const sw = input.swappedProbs;
    const swap = swapColumns(task);
    // P(A wins) seen from the swapped pass is its column 1 (A sits in the second position there).
    const pts: [number, number][] = [];
    let firstBefore = 0,
      firstAfter = 0,
      agree = 0,
      absDiff = 0;
    for (let i = 0; i < n; i++) {
      const a2 = sw[i * K + 1];
      if (pts.length < 2000) pts.push([probs[i * K], a2]);
      firstBefore += probs[i * K] / n;
      firstAfter += sw[i * K] / n;
      absDiff += Math.abs(probs[i * K] - a2) / n;
      const flipped = Float64Array.from(swap, (c) => sw[i * K + c]);
      if (argmax(probs, i) === argmax(flipped, 0)) agree++;
    }
    positionBody =
      chart({
        id: 'chart-position',
        xLabel: 'P(A wins), original order',
        yLabel: 'P(A wins), swapped pass',
        x: [0, 1],
        y: [0, 1],
        series: [{ name: 'rows', color: COLORS[0], points: pts, kind: 'dots' }],
        diagonal: true,
      }) +
      `<table class="position-table"><tr><th>mean P(first position wins), original</th><td id="metric-first-before">${f4(firstBefore)}</td></tr>` +
      `<tr><th>mean P(first position wins), swapped</th><td id="metric-first-after">${f4(firstAfter)}</td></tr>` +
      `<tr><th>mean |P(A) - P'(A)|</th><td>${f4(absDiff)}</td></tr><tr><th>verdict agreement</th><td id="metric-swap-agreement">${f4(agree / n)}</td></tr></table>`;
  }
  const position = panel('report-position', 'Position bias (A before and after swapping)', positionBody);

  let verbosityBody = missing('length differences (pass `lengthDiff`)');
  if (input.lengthDiff && input.lengthDiff.length === n) {
    const buckets = quantileBuckets(input.lengthDiff, 10);
    const pred: [number, number][] = [];
    const obs: [number, number][] = [];
    for (const b of buckets) {
      const x = b.reduce((s, i) => s + input.lengthDiff![i], 0) / b.length;
      pred.push([x, b.reduce((s, i) => s + probs[i * K] - probs[i * K + 1], 0) / b.length]);
      obs.push([x, b.reduce((s, i) => s + (labels[i] === 0 ? 1 : labels[i] === 1 ? -1 : 0), 0) / b.length]);
    }
    const xs = [...pred, ...obs].map((p) => p[0]);
    const ys = [...pred, ...obs].map((p) => Math.abs(p[1]));
    const ym = Math.max(0.2, ...ys);
    verbosityBody = chart({
      id: 'chart-verbosity',
      xLabel: 'characters of A − characters of B (decile means)',
      yLabel: 'P(A) − P(B)',
      x: [Math.min(...xs), Math.max(...xs)],
      y: [-ym, ym],
      series: [
        { name: 'predicted P(A) − P(B)', color: COLORS[0], points: pred, kind: 'line' },
        { name: 'observed A wins − B wins', color: COLORS[1], points: obs, kind: 'line' },
      ],
    });
  }
  const verbosity = panel('report-verbosity', 'Verbosity bias (preference vs length difference)', verbosityBody);

  // Accuracy per language: tasks scored by accuracy (WSDM) only, so the LMSYS report is unchanged.
  let language = '';
  if (task.metric.name === 'accuracy') {
    let body = missing('languages (pass `languages`: the file has no `language` column)');
    if (input.languages && input.languages.length === n && input.languages.some((l) => l)) {
      const groups = accuracyByGroup(
        probs,
        labels,
        input.languages.map((l) => l || '(none)'),
        K,
      );
      const shown = groups.slice(0, 12);
      body =
        barChart(
          'chart-language',
          'language (most rows first)',
          'accuracy',
          shown.map((g) => g.accuracy),
          shown.map((g) => g.group.slice(0, 8)),
          1,
        ) +
        `<table class="language-table"><tr><th>language</th><th>rows</th><th>accuracy</th></tr>${groups
          .map(
            (g) =>
              `<tr class="language-row" data-language="${esc(g.group)}" data-accuracy="${g.accuracy}"><td>${esc(g.group)}</td><td>${g.rows}</td><td>${f4(g.accuracy)}</td></tr>`,
          )
          .join('')}</table>`;
    }
    language = '\n' + panel(LANGUAGE_PANEL, 'Accuracy per language', body);
  }

  const title = esc(input.title ?? 'arenakit prediction report');
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${title}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px}h2{font-size:16px;margin:0 0 8px}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(450px,1fr));gap:16px}
.panel{border:1px solid #ddd;border-radius:6px;padding:12px}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #e3e3e3;padding:3px 8px;text-align:right}th{text-align:left;background:#f6f6f6}
.cm-cell{min-width:56px;text-align:center}.tick{font-size:10px;fill:#555}.axis{font-size:11px;fill:#333}.legend{font-size:11px}
.missing{color:#888;font-style:italic}
</style></head>
<body><h1>${title}</h1><main>
${summary}
${confusion}
${reliability}
${lengthPanel}
${position}
${verbosity}${language}
</main></body></html>
`;
}
