// Issue 19: continued training keeps the adapter's own lora_dropout. The fixtures' adapters say 0.0, so
// `train --adapter A` must give the same adapter, byte for byte, as the same run with --lora-dropout 0
// (before the fix it trained with the default 0.05: other dropout masks, another adapter).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, TRAINER } from './helpers/peaked';
import { fixtureBatch, GEMMA2_TINY } from './helpers/train-fixtures';

describe('train --adapter keeps the adapter lora_dropout (issue 19)', function () {
  this.timeout(300_000);
  let tmp: string;
  before(() => (tmp = mkdtempSync(join(tmpdir(), 'arenakit-adrop-'))));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('train --adapter A == train --adapter A --lora-dropout 0, byte for byte', () => {
    if (!existsSync(TRAINER)) execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
    const cfg = JSON.parse(readFileSync(join(GEMMA2_TINY, 'adapter', 'adapter_config.json'), 'utf8'));
    assert.equal(cfg.lora_dropout, 0);
    const rows = join(tmp, 'rows.jsonl');
    const batch = [...fixtureBatch('padded', [0, 1, 2]), ...fixtureBatch('single', [2])];
    writeFileSync(
      rows,
      Array(3)
        .fill(batch.map((r) => JSON.stringify({ input_ids: Array.from(r.inputIds), label: r.label })).join('\n'))
        .join('\n') + '\n',
    );
    const train = (out: string, extra: string[]) => {
      const r = spawnSync(
        process.execPath,
        [
          TRAINER,
          'train',
          '--base',
          GEMMA2_TINY,
          '--adapter',
          join(GEMMA2_TINY, 'adapter'),
          '--tokenized',
          rows,
          '--out',
          out,
          '--max-steps',
          '3',
          '--batch-size',
          '2',
          '--seed',
          '7',
          ...extra,
        ],
        { encoding: 'utf8' },
      );
      assert.equal(r.status, 0, r.stderr);
      return readFileSync(join(out, 'adapter_model.safetensors'));
    };
    const plain = train(join(tmp, 'a'), []);
    const zero = train(join(tmp, 'b'), ['--lora-dropout', '0']);
    const other = train(join(tmp, 'c'), ['--lora-dropout', '0.05']);
    console.log(
      `      adapter bytes: plain ${plain.length}, equal to --lora-dropout 0: ${plain.equals(zero)}, equal to --lora-dropout 0.05: ${plain.equals(other)}`,
    );
    assert.ok(plain.equals(zero));
    assert.ok(!plain.equals(other), 'the dropout setting must change the result (else this test cannot fail)');
  });
});
