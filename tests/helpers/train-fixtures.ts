// Shared by the training tests: the gemma2-tiny fixture batches as training rows.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GradRule } from '../../src/graph/grad';
import { batchFeeds, type Example } from '../../src/train/feeds';
import { buildTrainGraph } from '../../src/train/graph';
import { planLora, readAdapter } from '../../src/train/lora';
import { TrainSession, type TrainEp } from '../../src/train/session';
import { openCheckpoint, openSafetensors } from '../../src/weights/safetensors';
import { FIXTURES, fixtureConfig, maxAbsDiff } from './fixtures';

export const GEMMA2_TINY = join(FIXTURES, 'gemma2-tiny');
export const GEMMA2_TRAIN = join(FIXTURES, 'gemma2-train');

/** inputs.json's `padded` or `single` batch: each row cut to its attention_mask length, with the given labels. */
export function fixtureBatch(which: 'padded' | 'single', labels: number[]): Example[] {
  const inp = JSON.parse(readFileSync(join(GEMMA2_TINY, 'inputs.json'), 'utf8'))[which];
  return inp.input_ids.map((ids: number[], i: number) => ({
    inputIds: ids.slice(
      0,
      inp.attention_mask[i].reduce((a: number, v: number) => a + v, 0),
    ),
    label: labels[i],
  }));
}

/**
 * One forward + backward of the `padded` batch (labels 0, 1, 2) through the training graph, against
 * gemma2-tiny/grads.safetensors (HF + PEFT): max abs differences of the 57 gradients, the loss and the logits.
 */
export async function fixtureGradDiff(
  rules?: Record<string, GradRule>,
  ep: TrainEp = 'cpu',
): Promise<{ grad: number; loss: number; logits: number }> {
  const c = fixtureConfig(GEMMA2_TINY);
  const ck = openCheckpoint(GEMMA2_TINY);
  const ad = readAdapter(join(GEMMA2_TINY, 'adapter'));
  const s = await TrainSession.create(
    buildTrainGraph(c, ck.get, planLora(c, ad.settings), { rules }),
    1,
    undefined,
    ep,
  );
  const r = await s.run(batchFeeds(c, fixtureBatch('padded', [0, 1, 2])), ad.params, 1);
  await s.release();
  ck.close();
  const exp = JSON.parse(readFileSync(join(GEMMA2_TINY, 'expected.json'), 'utf8'));
  const g = openSafetensors(join(GEMMA2_TINY, 'grads.safetensors'));
  const keyMap: Record<string, string> = exp.grads.key_to_adapter_file_key;
  let grad = 0;
  assert.equal(g.tensors.size, r.grads.size, 'one gradient per trainable tensor');
  for (const k of g.tensors.keys()) grad = Math.max(grad, maxAbsDiff(r.grads.get(keyMap[k])!, g.read(k).data));
  g.close();
  return { grad, loss: Math.abs(r.loss - exp.loss.value), logits: maxAbsDiff(r.logits, exp.lora_logits.padded.flat()) };
}

/** Writes `batch` `times` over as a `--tokenized` JSONL file (one {input_ids, label} per line); returns `file`. */
export function writeTokenizedRows(file: string, batch: Example[], times: number): string {
  const block = batch.map((r) => JSON.stringify({ input_ids: Array.from(r.inputIds), label: r.label })).join('\n');
  writeFileSync(file, Array(times).fill(block).join('\n') + '\n');
  return file;
}
