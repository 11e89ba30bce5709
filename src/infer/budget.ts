// When the run's time budget starts: the notebook records its own start and passes it on
// (--started-at or ARENAKIT_STARTED_AT, epoch seconds as Python's time.time() prints, or an ISO
// date), so doctor, model loading and the self-check count against Kaggle's 9 hours. Pure.

/** Milliseconds on Date.now()'s clock, or undefined when neither the option nor the variable is set. */
export function parseStartedAt(
  opt: unknown,
  env: NodeJS.ProcessEnv = process.env,
  now: number = Date.now(),
): number | undefined {
  const [raw, where] =
    opt !== undefined
      ? [String(opt), '--started-at']
      : env.ARENAKIT_STARTED_AT
        ? [env.ARENAKIT_STARTED_AT, 'ARENAKIT_STARTED_AT']
        : [undefined, ''];
  if (raw === undefined) return undefined;
  const s = raw.trim();
  const ms = /^\d+(\.\d+)?$/.test(s) ? Number(s) * 1000 : Date.parse(s);
  if (!Number.isFinite(ms))
    throw new RangeError(`${where}: "${raw}" is not a time: give epoch seconds (python: time.time()) or an ISO date`);
  if (ms > now + 60_000)
    throw new RangeError(
      `${where}: ${new Date(ms).toISOString()} is in the future (now ${new Date(now).toISOString()}): pass the notebook's start time`,
    );
  return ms;
}
