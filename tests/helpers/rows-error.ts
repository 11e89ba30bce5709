// Asserts that reading rows fails with a RowsError whose message holds every given part (the file,
// the line, the fix), and prints it so the test log shows what a user would read.
import assert from 'node:assert/strict';
import { RowsError } from '../../src/data/rows';

export async function rejectsRows(p: Promise<unknown>, ...parts: (string | RegExp)[]): Promise<string> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof RowsError, `expected a RowsError, got ${String(err)}`);
  const msg = err.message;
  console.log(`      RowsError: ${msg.length > 220 ? msg.slice(0, 220) + '...' : msg}`);
  for (const part of parts) {
    if (typeof part === 'string')
      assert.ok(msg.includes(part), `message ${JSON.stringify(msg)} lacks ${JSON.stringify(part)}`);
    else assert.match(msg, part);
  }
  return msg;
}
