// Runtime fusions applied to a built ONNX Runtime graph (src/model/lower.ts): the residual Add + RMSNorm
// pair becomes one SkipSimplifiedLayerNormalization, GroupQueryAttention takes the packed q/k/v projection
// instead of its Split, and initializers no node reads any more leave. The model definition stays free of
// runtime ops; these passes only rewrite nodes.
import type { Graph, Node } from '../graph/ir';

/** Nodes consuming each value name. */
function consumers(g: Graph): Map<string, Node[]> {
  const m = new Map<string, Node[]>();
  for (const n of g.nodes) for (const i of n.inputs) if (i) m.set(i, [...(m.get(i) ?? []), n]);
  for (const o of g.outputs) m.set(o.name, [...(m.get(o.name) ?? []), { name: '<output>' } as Node]);
  return m;
}

/** Residual Add followed by RMSNorm of the sum -> one SkipSimplifiedLayerNormalization (outputs the norm and the sum). */
export function fuseSkipNorms(g: Graph, residualAdds: Set<string>): void {
  const byOutput = new Map<string, Node>();
  for (const n of g.nodes) if (residualAdds.has(n.name)) byOutput.set(n.outputs[0], n);
  const drop = new Set<Node>();
  for (const norm of g.nodes) {
    if (norm.op !== 'SimplifiedLayerNormalization') continue;
    const add = byOutput.get(norm.inputs[0]);
    if (!add) continue;
    const fused: Node = {
      name: `${norm.name}.skip`,
      op: 'SkipSimplifiedLayerNormalization',
      domain: 'com.microsoft',
      inputs: [add.inputs[0], add.inputs[1], norm.inputs[1]],
      outputs: [norm.outputs[0], '', '', add.outputs[0]],
      attrs: { epsilon: norm.attrs.epsilon },
    };
    g.nodes[g.nodes.indexOf(add)] = fused; // at the Add's place: its inputs and the gamma initializer exist there
    drop.add(norm);
  }
  g.nodes.splice(0, g.nodes.length, ...g.nodes.filter((n) => !drop.has(n)));
}

/** GroupQueryAttention fed by the three outputs of one Split of a packed q/k/v projection takes the packed tensor instead. */
export function packQkv(g: Graph): void {
  const use = consumers(g);
  const producer = new Map<string, Node>();
  for (const n of g.nodes) for (const o of n.outputs) producer.set(o, n);
  const drop = new Set<Node>();
  for (const n of g.nodes) {
    if (n.op !== 'GroupQueryAttention') continue;
    const split = producer.get(n.inputs[0]);
    if (!split || split.op !== 'Split' || split.outputs.length !== 3) continue;
    if (split.outputs.some((o, i) => n.inputs[i] !== o || (use.get(o) ?? []).length !== 1)) continue;
    n.inputs[0] = split.inputs[0];
    n.inputs[1] = '';
    n.inputs[2] = '';
    drop.add(split);
    for (const o of split.outputs) g.values.delete(o);
  }
  g.nodes.splice(0, g.nodes.length, ...g.nodes.filter((n) => !drop.has(n)));
}

/** Initializers no node reads any more (a fused Split's sizes) leave the graph. */
export function dropUnusedInitializers(g: Graph): void {
  const used = new Set(g.nodes.flatMap((n) => n.inputs));
  g.initializers.splice(0, g.initializers.length, ...g.initializers.filter((i) => used.has(i.name)));
}
