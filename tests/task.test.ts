// The task object (src/task/task.ts): label mapping from any model's id2label order, swap columns,
// decision rule and detection, for the LMSYS (3 columns, log loss) and WSDM (id,winner; accuracy) tasks.
import assert from 'node:assert/strict';
import { detectTask, getTask, mapProbs, modelToTask, swapColumns, TASKS, TaskError } from '../src/task/task';
import { oneHotLabel, taskOfColumns, winnerLabel } from '../src/task/labels';

describe('task object', () => {
  it('maps a permuted id2label onto the LMSYS columns by name', () => {
    const m = modelToTask(TASKS.lmsys, ['winner_tie', 'winner_model_a', 'winner_model_b']);
    assert.deepEqual(m.perm, [1, 2, 0]);
    assert.deepEqual(Array.from(mapProbs([0.2, 0.5, 0.3], 3, m)), [0.5, 0.3, 0.2]);
  });
  it('a 3-label LMSYS model on WSDM drops the tie and renormalises; a 2-label model cannot serve LMSYS', () => {
    const m = modelToTask(TASKS.wsdm, ['winner_model_a', 'winner_model_b', 'winner_tie']);
    const p = mapProbs([0.3, 0.5, 0.2], 3, m);
    assert.ok(Math.abs(p[0] - 0.375) < 1e-12 && Math.abs(p[1] - 0.625) < 1e-12);
    assert.throws(() => modelToTask(TASKS.lmsys, ['model_a', 'model_b']), /cannot give the lmsys task's tie column/);
    assert.throws(() => modelToTask(TASKS.lmsys, ['LABEL_0', 'LABEL_1', 'LABEL_2']), TaskError);
  });
  it('swap columns, decision rule, detection', () => {
    assert.deepEqual(swapColumns(TASKS.lmsys), [1, 0, 2]);
    assert.deepEqual(swapColumns(TASKS.wsdm), [1, 0]);
    assert.deepEqual(TASKS.wsdm.cells([0.4, 0.6]), ['model_b']);
    assert.deepEqual(TASKS.wsdm.cells([0.5, 0.5]), ['model_a']);
    assert.equal(detectTask('x/test.parquet', ['id', 'prompt', 'response_a', 'response_b', 'scored']).name, 'wsdm');
    assert.equal(detectTask('x/test.csv', ['id', 'prompt', 'response_a', 'response_b']).name, 'lmsys');
    assert.equal(detectTask('x/test.csv', [], 'wsdm').name, 'wsdm');
    assert.equal(
      detectTask('x/train.csv', ['id', 'prompt', 'response_a', 'response_b', 'winner', 'language']).name,
      'wsdm',
    );
    assert.equal(
      detectTask('x/train.parquet', [
        'id',
        'prompt',
        'response_a',
        'response_b',
        'winner_model_a',
        'winner_model_b',
        'winner_tie',
      ]).name,
      'lmsys',
    );
    assert.throws(() => getTask('kaggle'), /Unknown task: kaggle \(known: lmsys, wsdm\)/);
  });
});

describe('task labels (src/task/labels.ts)', () => {
  it('reads WSDM winner cells and LMSYS one-hot cells as outcome indices; blank is a test row, anything else is refused', () => {
    assert.deepEqual(['model_a', 'model_b', 'tie', '', 'Model_A', 'a'].map(winnerLabel), [
      0,
      1,
      2,
      null,
      undefined,
      undefined,
    ]);
    assert.deepEqual(
      [
        ['1', '0', '0'],
        ['0', '1', '0'],
        ['0', '0', '1'],
        ['', '', ''],
        ['1', '1', '0'],
        ['1', '', '0'],
        ['0.5', '0', '0'],
      ].map(oneHotLabel),
      [0, 1, 2, null, undefined, undefined, undefined],
    );
  });
  it("finds a prediction file's task from its header", () => {
    assert.equal(taskOfColumns(['id', 'winner_model_a', 'winner_model_b', 'winner_tie'])?.name, 'lmsys');
    assert.equal(taskOfColumns(['id', 'model_a', 'model_b'])?.name, 'wsdm');
    assert.equal(taskOfColumns(['id', 'winner_model_a', 'winner_model_b']), undefined);
  });
});
