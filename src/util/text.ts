// Row text sizes in characters, used by length-bin calibration, shard balancing, the report and the
// feature set; neutral so data/, post/ and cli/ need not import features/.
import type { ArenaRow } from '../types';

const chars = (parts: string[]) => parts.reduce((s, t) => s + t.length, 0);

/** Characters of prompt + both responses. */
export function textLength(row: ArenaRow): number {
  return chars(row.prompt) + chars(row.responseA) + chars(row.responseB);
}

/** Characters of response A minus characters of response B. */
export function lengthDifference(row: ArenaRow): number {
  return chars(row.responseA) - chars(row.responseB);
}
