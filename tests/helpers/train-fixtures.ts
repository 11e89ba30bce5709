// Shared by the training tests: the gemma2-tiny fixture batches as training rows.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Example } from '../../src/train/feeds';
import { FIXTURES } from './fixtures';

export const GEMMA2_TINY = join(FIXTURES, 'gemma2-tiny');
export const GEMMA2_TRAIN = join(FIXTURES, 'gemma2-train');

/** inputs.json's `padded` or `single` batch: each row cut to its attention_mask length, with the given labels. */
export function fixtureBatch(which: 'padded' | 'single', labels: number[]): Example[] {
  const inp = JSON.parse(readFileSync(join(GEMMA2_TINY, 'inputs.json'), 'utf8'))[which];
  return inp.input_ids.map((ids: number[], i: number) => ({
    inputIds: ids.slice(0, inp.attention_mask[i].reduce((a: number, v: number) => a + v, 0)),
    label: labels[i],
  }));
}
