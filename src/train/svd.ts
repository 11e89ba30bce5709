// Thin SVD in float64 by one-sided Jacobi rotations (Hestenes): orthogonalise the columns of W (or of
// W^T when W is wide) until every pair is orthogonal to 1e-15; singular values are the column norms.
// Small and exact enough for PiSSA initialisation of LoRA targets; O(k^2 n) per sweep.

export interface Svd {
  /** [m, k] row-major left singular vectors. */
  u: Float64Array;
  /** k singular values, descending. */
  s: Float64Array;
  /** [k, n] row-major right singular vectors (rows). */
  vt: Float64Array;
  k: number;
}

/** W [m, n] row-major (float32 or float64). */
export function svd(w: ArrayLike<number>, m: number, n: number): Svd {
  if (m < n) {
    // W^T = U' S V'^T  =>  W = V' S U'^T
    const t = new Float64Array(n * m);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) t[j * m + i] = w[i * n + j];
    const r = tallSvd(t, n, m);
    const u = new Float64Array(m * r.k);
    const vt = new Float64Array(r.k * n);
    for (let i = 0; i < m; i++) for (let c = 0; c < r.k; c++) u[i * r.k + c] = r.vt[c * m + i];
    for (let c = 0; c < r.k; c++) for (let j = 0; j < n; j++) vt[c * n + j] = r.u[j * r.k + c];
    return { u, s: r.s, vt, k: r.k };
  }
  return tallSvd(w, m, n);
}

function tallSvd(w: ArrayLike<number>, m: number, n: number): Svd {
  const a: Float64Array[] = [];
  const v: Float64Array[] = [];
  for (let j = 0; j < n; j++) {
    const col = new Float64Array(m);
    for (let i = 0; i < m; i++) col[i] = w[i * n + j];
    a.push(col);
    const e = new Float64Array(n);
    e[j] = 1;
    v.push(e);
  }
  for (let sweep = 0; sweep < 60; sweep++) {
    let rotated = false;
    for (let p = 0; p < n - 1; p++)
      for (let q = p + 1; q < n; q++) {
        const ap = a[p];
        const aq = a[q];
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        for (let i = 0; i < m; i++) {
          alpha += ap[i] * ap[i];
          beta += aq[i] * aq[i];
          gamma += ap[i] * aq[i];
        }
        if (Math.abs(gamma) <= 1e-15 * Math.sqrt(alpha * beta) || gamma === 0) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let i = 0; i < m; i++) {
          const x = ap[i];
          const y = aq[i];
          ap[i] = c * x - s * y;
          aq[i] = s * x + c * y;
        }
        const vp = v[p];
        const vq = v[q];
        for (let i = 0; i < n; i++) {
          const x = vp[i];
          const y = vq[i];
          vp[i] = c * x - s * y;
          vq[i] = s * x + c * y;
        }
      }
    if (!rotated) break;
  }
  const norms = a.map((col) => Math.sqrt(col.reduce((acc, x) => acc + x * x, 0)));
  const order = [...norms.keys()].sort((x, y) => norms[y] - norms[x]);
  const k = n;
  const u = new Float64Array(m * k);
  const s = new Float64Array(k);
  const vt = new Float64Array(k * n);
  order.forEach((j, c) => {
    s[c] = norms[j];
    for (let i = 0; i < m; i++) u[i * k + c] = norms[j] > 0 ? a[j][i] / norms[j] : 0;
    for (let i = 0; i < n; i++) vt[c * n + i] = v[j][i];
  });
  return { u, s, vt, k };
}
