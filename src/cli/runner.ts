// The runner bundle (dist/runner.cjs): predict, validate, calibrate, doctor, tokens. Each command lives in
// src/cli/commands/<name>.ts and exports run(argv); `_shard-worker` is the internal --devices worker.
import { dispatch } from './args';

dispatch('runner.cjs', {
  predict: async () => import('./commands/predict'),
  validate: async () => import('./commands/validate'),
  calibrate: async () => import('./commands/calibrate'),
  doctor: async () => import('./commands/doctor'),
  tokens: async () => import('./commands/tokens'),
  '_shard-worker': async () => import('./commands/shard-worker'),
});
