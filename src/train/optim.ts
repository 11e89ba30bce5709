// Optimisation exactly as torch 1.13 + transformers 4.45 do it, in float32 arithmetic (Math.fround
// after every tensor op, like torch's CPU kernels): AdamW (_single_tensor_adamw: decoupled decay,
// bias correction), clip_grad_norm_ (norm of the per-tensor norms, grads *= min(1, max/(norm+1e-6)))
// and the LambdaLR schedules of get_linear_schedule_with_warmup / get_constant_schedule_with_warmup.
import type { Params } from './lora';

const fr = Math.fround;

export interface AdamWOptions {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
}

export interface AdamState {
  /** Optimizer steps taken (torch's per-tensor `step`, equal for every tensor). */
  t: number;
  m: Params;
  v: Params;
}

export function adamState(params: Params): AdamState {
  const zeros = () => new Map([...params].map(([k, p]) => [k, new Float32Array(p.length)]));
  return { t: 0, m: zeros(), v: zeros() };
}

/** One AdamW step in place: `lr` is this step's scheduled learning rate. */
export function adamwStep(params: Params, grads: Params, state: AdamState, o: AdamWOptions, lr: number): void {
  state.t += 1;
  // Python scalars enter torch's float32 kernels cast to float32.
  const b1 = fr(o.betas[0]);
  const b2 = fr(o.betas[1]);
  const c1 = fr(1 - o.betas[0]);
  const c2 = fr(1 - o.betas[1]);
  const bc2sqrt = fr(Math.sqrt(1 - o.betas[1] ** state.t));
  const negStep = fr(-lr / (1 - o.betas[0] ** state.t));
  const decay = fr(1 - lr * o.weightDecay);
  const eps = fr(o.eps);
  for (const [k, p] of params) {
    const g = grads.get(k)!;
    const m = state.m.get(k)!;
    const v = state.v.get(k)!;
    for (let i = 0; i < p.length; i++) {
      p[i] = fr(p[i] * decay);
      m[i] = fr(fr(m[i] * b1) + fr(c1 * g[i]));
      v[i] = fr(fr(v[i] * b2) + fr(fr(c2 * g[i]) * g[i]));
      const denom = fr(fr(fr(Math.sqrt(v[i])) / bc2sqrt) + eps);
      p[i] = fr(p[i] + fr(negStep * fr(m[i] / denom)));
    }
  }
}

/** torch.nn.utils.clip_grad_norm_: scales `grads` in place; returns the norm before clipping. */
export function clipGradNorm(grads: Params, maxNorm: number): number {
  let sq = 0;
  for (const g of grads.values()) {
    let s = 0;
    for (let i = 0; i < g.length; i++) s += g[i] * g[i];
    const n = fr(Math.sqrt(s));
    sq += n * n;
  }
  const total = fr(Math.sqrt(sq));
  const coef = fr(maxNorm / fr(total + 1e-6));
  if (coef < 1) for (const g of grads.values()) for (let i = 0; i < g.length; i++) g[i] = fr(g[i] * coef);
  return total;
}

export type Schedule = 'linear' | 'constant';

/**
 * LambdaLR factor for optimizer step k (1-based). The scheduler is built before the first step and
 * sets lr = base * lambda(0), so step k uses lambda(k - 1): with warmup the first step has lr 0.
 */
export function lrAt(step: number, base: number, schedule: Schedule, warmup: number, total: number): number {
  const s = step - 1;
  if (s < warmup) return (base * s) / Math.max(1, warmup);
  if (schedule === 'constant') return base;
  return base * Math.max(0, (total - s) / Math.max(1, total - warmup));
}
