import { type CompiledNode, compileNode, declaredTensors } from './compile.js';
import { DynnError } from './errors.js';
import {
  type Attrs,
  type Dim,
  type DType,
  type Graph,
  type GraphNode,
  SPEC_VERSION,
  type SubGraph,
  splitOpType,
  type TensorInfo,
  type ValueInfo,
} from './ir.js';
import type { Runtime } from './runtime.js';
import { addTensor } from './validate.js';

/** Options of one {@link GraphBuilder.add} call. */
export interface AddOptions {
  /** Node name; defaults to `<op name in kebab case>_<n>`. */
  name?: string;
}

/**
 * Writes graphs in TypeScript. Shapes are inferred as nodes are added, so a mismatch fails at
 * the line that caused it, naming the node.
 *
 * @example
 * ```ts
 * const b = new GraphBuilder(runtime);
 * const x = b.input('image', 'float32', ['batch', 28, 28, 1]);
 * const h = b.add('core.Conv2D', x, { filters: 8, kernelSize: [3, 3], activation: 'relu' });
 * const y = b.add('core.Dense', b.add('core.Flatten', h), { units: 10 });
 * const graph = b.build({ logits: y });
 * ```
 */
export class GraphBuilder {
  private readonly runtime: Runtime;
  private readonly inputs: ValueInfo[] = [];
  private readonly nodes: GraphNode[] = [];
  private readonly values = new Map<string, ValueInfo>();
  private readonly params: TensorInfo[] = [];
  private readonly state: TensorInfo[] = [];
  private readonly counters = new Map<string, number>();
  /** Op domains used, sub-graphs included: the graph's opsets. */
  private readonly domains = new Set<string>();

  /** Starts an empty graph whose nodes may use the ops of `runtime`. */
  constructor(runtime: Runtime) {
    this.runtime = runtime;
  }

  /** Declares a graph input and returns its value name. */
  input(name: string, dtype: DType, shape: Dim[]): string {
    this.claim(name);
    const info = { name, dtype, shape };
    this.inputs.push(info);
    this.values.set(name, info);
    return name;
  }

  /** Adds a node with one output and returns the output's value name. */
  add(op: string, inputs: string | string[], attrs: Attrs = {}, options: AddOptions = {}): string {
    const [output] = this.addNode(op, inputs, attrs, options);
    return output!;
  }

  /** Adds a node and returns all of its output value names (for multi-output ops). */
  addMulti(op: string, inputs: string | string[], attrs: Attrs = {}, options: AddOptions = {}): string[] {
    return this.addNode(op, inputs, attrs, options);
  }

  /** The inferred dtype and shape of a value. */
  info(value: string): ValueInfo {
    const info = this.values.get(value);
    if (info === undefined)
      throw new DynnError('INVALID_GRAPH', `No value named '${value}' in this builder.`);
    return info;
  }

  /** Finishes the graph with the given outputs (output name -> value name). */
  build(outputs: Record<string, string>): Graph {
    const renamed: GraphNode[] = this.nodes.map((node) => ({ ...node, outputs: [...node.outputs] }));
    const graphOutputs: ValueInfo[] = [];
    const domains = new Set(this.domains);
    // The name each value has in the built graph, once an output renamed it.
    const current = new Map<string, string>();
    for (const [outputName, value] of Object.entries(outputs)) {
      const info = this.info(value);
      if (outputName !== value && this.values.has(outputName)) {
        throw new DynnError('INVALID_GRAPH', `Output name '${outputName}' is already a value of the graph.`);
      }
      const name = current.get(value) ?? value;
      if (name !== outputName) {
        const producer = renamed.find((node) => node.outputs.includes(name));
        if (producer !== undefined && !graphOutputs.some((o) => o.name === name)) {
          // Graph outputs are values; rename the producing node's output so the name is stable.
          producer.outputs[producer.outputs.indexOf(name)] = outputName;
          for (const node of renamed) node.inputs = node.inputs.map((n) => (n === name ? outputName : n));
          current.set(value, outputName);
        } else {
          // A graph input, or a value another output already names: an identity node names it again.
          if (renamed.some((node) => node.name === outputName)) {
            throw new DynnError(
              'INVALID_GRAPH',
              `Output name '${outputName}' is already a node of the graph.`,
            );
          }
          renamed.push({
            name: outputName,
            op: 'core.Identity',
            inputs: [name],
            outputs: [outputName],
            attrs: {},
          });
          domains.add('core');
        }
      }
      graphOutputs.push({ name: outputName, dtype: info.dtype, shape: info.shape });
    }
    const opsets: Record<string, number> = {};
    for (const domain of domains) {
      const plugin = this.runtime.plugins.find((p) => p.domain === domain);
      if (plugin !== undefined) opsets[domain] = plugin.opset;
    }
    return {
      specVersion: SPEC_VERSION,
      opsets,
      inputs: this.inputs.map((v) => ({ ...v, shape: [...v.shape] })),
      outputs: graphOutputs,
      nodes: renamed,
      params: this.params.map((t) => ({ ...t })),
      state: this.state.map((t) => ({ ...t })),
    };
  }

  /**
   * Finishes the graph as a sub-graph, the value of a `graph` attribute (a loop body, an expert):
   * its inputs, outputs and nodes. Its parameters are declared by the graph that holds it, named
   * after the enclosing node, when that node is added.
   *
   * @example
   * ```ts
   * const body = new GraphBuilder(runtime);
   * const h = body.input('h', 'float32', ['batch', 16]);
   * const x = body.input('x', 'float32', ['batch', 8]);
   * const next = body.add('core.Dense', body.add('core.Concat', [h, x]), { units: 16, activation: 'tanh' });
   * const scan = b.addMulti('core.Scan', [h0, sequence], { body: body.subGraph({ h: next }) });
   * ```
   */
  subGraph(outputs: Record<string, string>): SubGraph {
    const { inputs, outputs: graphOutputs, nodes } = this.build(outputs);
    return { inputs, outputs: graphOutputs, nodes };
  }

  private addNode(op: string, inputs: string | string[], attrs: Attrs, options: AddOptions): string[] {
    const def = this.runtime.op(op);
    const name = options.name ?? this.autoName(op);
    if (this.nodes.some((node) => node.name === name)) {
      throw new DynnError('INVALID_GRAPH', `A node named '${name}' already exists.`, { node: name, op });
    }
    const inputNames = typeof inputs === 'string' ? [inputs] : inputs;
    const node: GraphNode = { name, op, inputs: inputNames, outputs: [], attrs };
    const inputInfos = inputNames.map((value) => {
      const info = this.values.get(value);
      if (info === undefined) {
        throw new DynnError('INVALID_GRAPH', `Node '${name}' (${op}) reads unknown value '${value}'.`, {
          node: name,
          op,
        });
      }
      return info;
    });
    const count =
      def.outputs === 'variadic'
        ? compileNode(this.runtime, node, inputInfos, '', true).outputs.length
        : (def.outputs ?? 1);
    const outputs = count === 1 ? [name] : Array.from({ length: count }, (_, i) => `${name}:${i}`);
    node.outputs = outputs;
    for (const output of outputs) this.claim(output);
    const compiled = compileNode(this.runtime, node, inputInfos);
    const tensors = declaredTensors(compiled);
    this.nodes.push(node);
    for (const info of compiled.outputs) this.values.set(info.name, info);
    for (const t of tensors.params) addTensor(this.params, t.info);
    for (const t of tensors.state) addTensor(this.state, t.info);
    this.addDomains(compiled);
    return outputs;
  }

  private addDomains(node: CompiledNode): void {
    this.domains.add(splitOpType(node.node.op).domain);
    for (const sub of node.subGraphs) for (const inner of sub.compiled.nodes) this.addDomains(inner);
  }

  private claim(name: string): void {
    if (this.values.has(name)) throw new DynnError('INVALID_GRAPH', `Value name '${name}' is already used.`);
  }

  private autoName(op: string): string {
    const base = splitOpType(op)
      .name.replace(/([a-z0-9])([A-Z])/g, '$1-$2')
      .toLowerCase();
    let n = this.counters.get(base) ?? 0;
    let name: string;
    do {
      n += 1;
      name = `${base}_${n}`;
    } while (this.values.has(name) || this.nodes.some((node) => node.name === name));
    this.counters.set(base, n);
    return name;
  }
}
