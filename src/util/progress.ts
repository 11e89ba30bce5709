// Progress lines with rate and ETA on stderr, at most one every `everyMs`, so long runs (hours on
// Kaggle) say where they are without flooding the notebook log.
export class Progress {
  private start = Date.now();
  private last = Date.now();
  constructor(
    private label: string,
    private total: number,
    private unit = 'rows',
    private everyMs = Number(process.env.ARENAKIT_PROGRESS_MS ?? 5000),
    private out: (s: string) => void = (s) => process.stderr.write(s + '\n'),
  ) {}

  update(done: number, force = false): void {
    const now = Date.now();
    if (!force && now - this.last < this.everyMs) return;
    this.last = now;
    const sec = (now - this.start) / 1000;
    const rate = done / Math.max(sec, 1e-9);
    const eta = rate > 0 ? (this.total - done) / rate : Infinity;
    const pct = this.total ? ((100 * done) / this.total).toFixed(1) : '100';
    this.out(
      `${this.label}: ${done}/${this.total} ${this.unit} (${pct}%), ${rate.toFixed(1)} ${this.unit}/s, elapsed ${fmt(sec)}, ETA ${fmt(eta)}`,
    );
  }

  done(done = this.total): number {
    this.update(done, true);
    return (Date.now() - this.start) / 1000;
  }
}

export function fmt(sec: number): string {
  if (!Number.isFinite(sec)) return '?';
  if (sec < 90) return `${sec.toFixed(1)}s`;
  if (sec < 5400) return `${(sec / 60).toFixed(1)}min`;
  return `${(sec / 3600).toFixed(2)}h`;
}
