// Head-only training (`--train head`): the pooled features of every row come from one forward pass;
// the linear score head W [labels, hidden] is then fitted to them in JS by full-batch AdamW on the
// mean cross-entropy (float64), which takes seconds where a LoRA run takes hours. Pure.

export interface HeadFitOptions {
  steps: number;
  lr: number;
  weightDecay: number;
}

export interface HeadFit {
  weight: Float32Array;
  /** Mean CE of the fitted head on the training features. */
  loss: number;
  /** Mean CE of the starting head. */
  startLoss: number;
}

/** Mean cross-entropy of head `w` on features x [n, h]; adds d(loss)/dw into `grad` when given. */
export function headLoss(w: ArrayLike<number>, x: Float32Array, labels: number[], h: number, c: number, grad?: Float64Array): number {
  const n = labels.length;
  let loss = 0;
  const z = new Float64Array(c);
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let k = 0; k < c; k++) {
      let s = 0;
      for (let j = 0; j < h; j++) s += w[k * h + j] * x[i * h + j];
      z[k] = s;
      max = Math.max(max, s);
    }
    let sum = 0;
    for (let k = 0; k < c; k++) sum += Math.exp(z[k] - max);
    loss += Math.log(sum) + max - z[labels[i]];
    if (grad)
      for (let k = 0; k < c; k++) {
        const g = (Math.exp(z[k] - max) / sum - (k === labels[i] ? 1 : 0)) / n;
        for (let j = 0; j < h; j++) grad[k * h + j] += g * x[i * h + j];
      }
  }
  return loss / n;
}

export function fitHead(x: Float32Array, labels: number[], h: number, c: number, start: Float32Array, o: HeadFitOptions): HeadFit {
  const w = Float64Array.from(start);
  const m = new Float64Array(w.length);
  const v = new Float64Array(w.length);
  const startLoss = headLoss(w, x, labels, h, c);
  for (let t = 1; t <= o.steps; t++) {
    const g = new Float64Array(w.length);
    headLoss(w, x, labels, h, c, g);
    for (let i = 0; i < w.length; i++) {
      w[i] *= 1 - o.lr * o.weightDecay;
      m[i] = 0.9 * m[i] + 0.1 * g[i];
      v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
      w[i] -= (o.lr / (1 - 0.9 ** t)) * (m[i] / (Math.sqrt(v[i] / (1 - 0.999 ** t)) + 1e-8));
    }
  }
  return { weight: Float32Array.from(w), loss: headLoss(w, x, labels, h, c), startLoss };
}
