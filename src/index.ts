// arenakit's public surface: named exports only. Everything else under src/ is internal.
export type {
  ArenaRow,
  ReadRowsResult,
  ModelConfig,
  HostTensor,
  WeightSource,
  GraphOptions,
  LinearFormat,
} from './types';
export { LABEL_COLUMNS } from './task/task';
// Stages, in pipeline order.
export { readRows } from './data/rows';
export { getTemplate, TEMPLATE_NAMES } from './format/templates';
export { truncateParts, fairShares } from './format/truncate';
export { loadTokenizer, encodeRow, encodeRows } from './format/encode';
export { planBatches, paddingEfficiency } from './infer/batching';
export { runLogits, type EpChoice } from './infer/session';
export { openSpec, openHandle, passProbs, type ModelSpec, type ModelHandle } from './infer/model';
export { predictModel, parseTta, type Tta, type ModelRun } from './infer/tta';
export { softmaxRows, flipAB, mergeSwap, type Probs } from './util/probs';
export { findCudaLibraries, describeCudaStatus } from './infer/cuda-libs';
export { applyCalibration, fitCalibration, type Calibration } from './post/calibrate';
export { fitTieModel, scoreToProbs } from './post/tie';
export { blendProbs, fitBlendWeights } from './post/blend';
export { predictFeatures } from './features/model';
export { renderReport } from './report/report';
export { logLoss, accuracy, swapConsistency } from './metrics/metrics';
export { writeSubmission } from './data/submission';
// Weights producer.
export { GraphBuilder } from './graph/builder';
export { serialise } from './graph/serialise';
export { buildDecoderGraph } from './model/lower';
export { FAMILIES } from './model/families';
export { quantizeNBits, dequantizeNBits } from './quant/nbits';
export { openSafetensors, openCheckpoint } from './weights/safetensors';
export { parseHfConfig } from './weights/hfconfig';
export { openAdapter, mergedSource } from './weights/peft';
export { importCheckpoint } from './weights/import';
export { writeWeightsDir } from './weights/write';
export { readManifest, type Manifest } from './weights/manifest';
