// Doctor's time estimate for a run, from the notebook's start: what was spent before, model load
// (with the self-check; workers load in parallel, so once), and the passes over the rows split between
// the devices. Advice, never a veto: predict keeps to its --time-budget whatever this says. Pure.

export interface EstimateInput {
  /** Tokens of the whole data set (capped per row at the model's max tokens). */
  tokens: number;
  tokensPerSecond: number;
  /** Passes per row: 1, 2 (swap) or 1 + fraction. */
  ttaPasses: number;
  devices: number;
  loadSeconds: number;
  /** Seconds between the run's start (--started-at) and the model load. */
  elapsedSeconds: number;
  budgetSeconds: number;
}

export interface Estimate {
  seconds: number;
  passSeconds: number;
  elapsedSeconds: number;
  fits: boolean;
  advice: string;
}

export function runEstimate(x: EstimateInput): Estimate {
  const devices = Math.max(1, x.devices);
  const elapsedSeconds = Math.max(0, x.elapsedSeconds);
  const firstPass = x.tokens / Math.max(x.tokensPerSecond, 1e-9) / devices;
  const passSeconds = firstPass * x.ttaPasses;
  const seconds = elapsedSeconds + x.loadSeconds + passSeconds;
  const fits = seconds <= x.budgetSeconds;
  const left = x.budgetSeconds - elapsedSeconds - x.loadSeconds;
  let advice: string;
  if (fits) advice = `fits with ${Math.round(x.budgetSeconds - seconds)} s to spare`;
  else if (left >= firstPass && x.ttaPasses > 1) {
    const f = Math.max(0, Math.floor(((left - firstPass) / firstPass) * 100) / 100);
    advice = `the swapped pass does not fit: predict --time-budget swaps the least certain rows it has time for (about --tta swap-uncertain:${f})`;
  } else {
    const reach = left > 0 ? Math.min(1, left / firstPass) : 0;
    advice = `the first pass reaches about ${Math.round(reach * 100)}% of the rows in time: predict --time-budget gives the rest the other models' blend, else the prior; a smaller/faster model, --token-budget or more devices would cover them`;
  }
  return { seconds, passSeconds, elapsedSeconds, fits, advice };
}
