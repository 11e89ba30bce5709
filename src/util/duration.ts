// Durations on the command line (doctor --budget, predict/validate --time-budget): one parser.

export class DurationError extends Error {
  override name = 'DurationError';
}

/** "9h", "90m", "5400s", "1h30m", "0.5s" or plain seconds -> seconds. */
export function parseDuration(s: string, flag: string): number {
  const t = s.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t);
  const m = /^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$/.exec(t);
  if (!m || !t) throw new DurationError(`${flag} must be a duration such as 9h, 8h30m, 90m or 5400s, got "${s}"`);
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
}
