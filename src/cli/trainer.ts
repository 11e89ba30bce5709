// The trainer bundle (dist/trainer.cjs): produces weights directories the runner loads.
// tiny: seeded random tiny Gemma-2 (CI, demo); import: HF checkpoint + PEFT adapter -> merged,
// quantized ONNX; features: the gradient-boosted feature baseline; prepare: a pack's weights
// directories, its adapters imported onto their base models (Kaggle notebooks).
import { dispatch } from './args';

dispatch('trainer.cjs', {
  tiny: async () => import('./commands/tiny'),
  import: async () => import('./commands/import'),
  features: async () => import('./commands/features'),
  train: async () => import('./commands/train'),
  prepare: async () => import('./commands/prepare'),
});
