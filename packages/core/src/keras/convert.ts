import { GraphBuilder } from '../builder.js';
import { DynnError } from '../errors.js';
import { BATCH, type Dim, type DType, type Graph } from '../ir.js';
import type { Runtime } from '../runtime.js';
import {
  inboundCallsOf,
  type KerasLayer,
  type KerasModel,
  layersOf,
  MODEL_CLASSES,
  modelFileError,
  modelOf,
  modelOfTopology,
  type TensorRef,
  tensorRefsOf,
} from './keras-json.js';
import { converterFor, LAYER_CONVERTERS, unsupported } from './layer-converters.js';

/** The result of {@link convertLayersTopology}. */
export interface LayersConversion {
  /** The dynn graph: one node per Keras layer, named after it; inputs and outputs named after the Keras input and output layers. */
  graph: Graph;
  /**
   * Where each Keras weight goes: Keras weight name (`<layer>/<weight>`, as in a model.json
   * weights manifest, e.g. `conv1/depthwise_kernel`) -> dynn parameter or state name
   * (`<node>/<local name>`, e.g. `conv1/depthwiseKernel`).
   */
  weightNames: Map<string, string>;
}

/** Every layer class {@link convertLayersTopology} imports, for error messages and docs. */
export const SUPPORTED_LAYER_CLASSES: readonly string[] = [
  'InputLayer',
  ...Object.keys(LAYER_CONVERTERS),
  ...MODEL_CLASSES,
];

const KERAS_DTYPES: Record<string, DType> = {
  float32: 'float32',
  float16: 'float32',
  float64: 'float32',
  int32: 'int32',
  int64: 'int32',
  bool: 'bool',
};

/** Keras weight names are snake_case; dynn's local names are the same words in camelCase. */
function snakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** A node or value name: `/` separates node and parameter names and `:` output indices in dynn. */
function sanitize(name: string): string {
  return name.replace(/[/:\s]/g, '_');
}

/**
 * Values are keyed by layer and output index only: each layer is called once (shared layers are
 * refused), and Keras numbers the call of a nested model 1 when its own first node is skipped.
 */
function refKey(ref: TensorRef): string {
  return `${ref.layer}\u0000${ref.tensor}`;
}

/** Walks a Keras model config (nested models inlined) and writes the dynn graph. */
class TopologyConverter {
  readonly builder: GraphBuilder;
  /** Keras layer name of each dynn node that may hold weights. */
  private readonly layerOfNode = new Map<string, string>();
  private readonly taken = new Set<string>();

  constructor(runtime: Runtime) {
    this.builder = new GraphBuilder(runtime);
  }

  /** A unique node / value name for a Keras name. */
  claim(kerasName: string): string {
    const base = sanitize(kerasName) || 'layer';
    let name = base;
    for (let n = 2; this.taken.has(name); n += 1) name = `${base}_${n}`;
    this.taken.add(name);
    return name;
  }

  /** True when a graph input or node already has this name. */
  isTaken(name: string): boolean {
    return this.taken.has(name);
  }

  /** Converts `model`; `bound` are the values feeding a nested model (undefined at the top level). */
  convertModel(model: KerasModel, bound?: readonly string[]): { values: string[]; names: string[] } {
    return model.className === 'Sequential'
      ? this.convertSequential(model, bound)
      : this.convertFunctional(model, bound);
  }

  /** Keras weight name -> dynn tensor name, for the nodes of the built graph. */
  weightNames(graph: Graph): Map<string, string> {
    const names = new Map<string, string>();
    for (const tensor of [...graph.params, ...graph.state]) {
      const slash = tensor.name.lastIndexOf('/');
      const layer = this.layerOfNode.get(tensor.name.slice(0, slash));
      if (layer === undefined) {
        throw new DynnError('INVALID_GRAPH', `No Keras layer made the tensor '${tensor.name}'.`);
      }
      names.set(`${layer}/${snakeCase(tensor.name.slice(slash + 1))}`, tensor.name);
    }
    return names;
  }

  private convertSequential(
    model: KerasModel,
    bound?: readonly string[],
  ): { values: string[]; names: string[] } {
    const layers = layersOf(model);
    const first = layers[0];
    if (first === undefined) throw modelFileError(`The Sequential model '${model.name}' has no layers.`);
    let value: string;
    let rest = layers;
    if (bound !== undefined) {
      if (bound.length !== 1) {
        throw modelFileError(
          `The Sequential model '${model.name}' is called with ${bound.length} inputs; it takes one.`,
          model.name,
        );
      }
      value = bound[0]!;
      if (first.className === 'InputLayer') rest = layers.slice(1);
    } else if (first.className === 'InputLayer') {
      value = this.declareInput(first, first.name);
      rest = layers.slice(1);
    } else {
      // tfjs-layers and older Keras keep the input shape on the first layer; the input layer
      // they create is named `<first layer>_input`.
      value = this.declareInput(first, `${first.name}_input`);
    }
    let last = first;
    for (const layer of rest) {
      [value] = this.convertLayer(layer, [value]) as [string];
      last = layer;
    }
    return { values: [value], names: [last.name] };
  }

  private convertFunctional(
    model: KerasModel,
    bound?: readonly string[],
  ): { values: string[]; names: string[] } {
    const layers = layersOf(model);
    const inputRefs = tensorRefsOf(model.config.input_layers, 'input_layers', model.name);
    const outputRefs = tensorRefsOf(model.config.output_layers, 'output_layers', model.name);
    if (bound !== undefined && bound.length !== inputRefs.length) {
      throw modelFileError(
        `The model '${model.name}' is called with ${bound.length} inputs; it takes ${inputRefs.length}.`,
        model.name,
      );
    }
    const values = new Map<string, string>();
    const pending: { layer: KerasLayer; inputs: TensorRef[] }[] = [];
    for (const layer of layers) {
      if (layer.className === 'InputLayer') {
        const position = inputRefs.findIndex((ref) => ref.layer === layer.name);
        if (position < 0) {
          throw modelFileError(
            `Input layer '${layer.name}' is not among the inputs of model '${model.name}'.`,
          );
        }
        const value = bound === undefined ? this.declareInput(layer, layer.name) : bound[position]!;
        values.set(refKey({ layer: layer.name, node: 0, tensor: 0 }), value);
        continue;
      }
      const calls = inboundCallsOf(layer);
      if (calls.length > 1) {
        throw unsupported(
          layer,
          `is called ${calls.length} times (a shared layer). dynn gives every node its own weights; ` +
            'rebuild the model with one layer per call.',
        );
      }
      // A layer never called does not take part in the model.
      if (calls.length === 1) pending.push({ layer, inputs: calls[0]! });
    }
    // Keras lists layers in topological order, but nothing requires it: convert each layer once
    // all of its inputs exist.
    while (pending.length > 0) {
      const ready = pending.findIndex(({ inputs }) => inputs.every((ref) => values.has(refKey(ref))));
      if (ready < 0) {
        const { layer, inputs } = pending[0]!;
        const missing = inputs.filter((ref) => !values.has(refKey(ref))).map((ref) => ref.layer);
        throw modelFileError(
          `Layer '${layer.name}' of model '${model.name}' reads ${missing.join(', ')}, which no layer produces.`,
          layer.name,
        );
      }
      const [{ layer, inputs }] = pending.splice(ready, 1) as [{ layer: KerasLayer; inputs: TensorRef[] }];
      const outputs = this.convertLayer(
        layer,
        inputs.map((ref) => values.get(refKey(ref))!),
      );
      for (const [tensor, value] of outputs.entries())
        values.set(refKey({ layer: layer.name, node: 0, tensor }), value);
    }
    const outputValues = outputRefs.map((ref) => {
      const value = values.get(refKey(ref));
      if (value === undefined) {
        throw modelFileError(
          `Output ${ref.layer}[${ref.node}][${ref.tensor}] of model '${model.name}' is never computed.`,
        );
      }
      return value;
    });
    const outputNames = outputRefs.map((ref) =>
      ref.tensor === 0 ? ref.layer : `${ref.layer}_${ref.tensor}`,
    );
    return { values: outputValues, names: outputNames };
  }

  private declareInput(layer: KerasLayer, kerasName: string): string {
    const config = layer.config;
    const shape = config.batch_input_shape ?? config.batch_shape ?? withBatch(config.input_shape);
    if (
      !Array.isArray(shape) ||
      shape.length === 0 ||
      !shape.every((d) => d === null || typeof d === 'number')
    ) {
      throw modelFileError(
        `Layer '${layer.name}' (${layer.className}) gives no input shape (batch_input_shape); ` +
          'the model cannot be imported without one.',
        layer.name,
      );
    }
    const kerasDtype = typeof config.dtype === 'string' ? config.dtype : 'float32';
    const dtype = KERAS_DTYPES[kerasDtype];
    if (dtype === undefined) {
      throw unsupported(layer, `takes ${kerasDtype} inputs, which dynn does not support.`);
    }
    const name = this.claim(kerasName);
    // The first dimension is always the batch; other free dimensions get their own names.
    const dims: Dim[] = shape.map((d, axis) =>
      axis === 0 ? BATCH : typeof d === 'number' ? d : `${name}_dim${axis}`,
    );
    return this.builder.input(name, dtype, dims);
  }

  private convertLayer(layer: KerasLayer, inputs: string[]): string[] {
    if ((MODEL_CLASSES as readonly string[]).includes(layer.className)) {
      return this.convertModel(modelOf(layer.className, layer.config, layer.name), inputs).values;
    }
    const convert = converterFor(layer.className);
    if (convert === undefined) {
      throw unsupported(
        layer,
        `cannot be imported: dynn has no equivalent of the ${layer.className} layer class. ` +
          `Supported layer classes: ${SUPPORTED_LAYER_CLASSES.join(', ')}.`,
      );
    }
    if (layer.config.data_format === 'channels_first') {
      throw unsupported(
        layer,
        "uses data_format 'channels_first'; dynn supports only 'channels_last' (NHWC).",
      );
    }
    const node = convert(
      layer,
      inputs.map((value) => this.builder.info(value)),
    );
    const name = this.claim(layer.name);
    this.layerOfNode.set(name, layer.name);
    try {
      return [this.builder.add(node.op, inputs, node.attrs, { name })];
    } catch (error) {
      if (error instanceof DynnError) {
        throw new DynnError(
          error.code,
          `Keras layer '${layer.name}' (${layer.className}): ${error.message}`,
          {
            ...error.context,
            node: name,
          },
        );
      }
      throw error;
    }
  }
}

function withBatch(shape: unknown): unknown {
  return Array.isArray(shape) ? [null, ...shape] : undefined;
}

/**
 * Converts the topology of a tfjs-layers or Keras model (the `modelTopology` of a model.json:
 * `{class_name, config}` as tfjs-layers saves it, or `{model_config: {...}}` as the Keras
 * converter writes it) to a dynn graph. Pure: reads JSON, returns data; no weights are touched.
 *
 * Sequential and functional models (`Model` / `Functional`, Keras 2 and 3 `inbound_nodes`) are
 * read; models nested as layers are inlined. Each layer becomes one node named after it; graph
 * inputs are named after the input layers (a Sequential without one: `<first layer>_input`) with
 * the batch dimension `'batch'`, and graph outputs after the output layers.
 *
 * @throws DynnError `UNSUPPORTED_LAYER` naming the layer and its class when a layer (or one of
 * its settings, such as `data_format: 'channels_first'`) has no dynn equivalent;
 * `MODEL_FILE` when the JSON is not a layers model.
 *
 * @example
 * ```ts
 * const { graph, weightNames } = convertLayersTopology(runtime, modelJson.modelTopology);
 * ```
 */
export function convertLayersTopology(runtime: Runtime, modelTopology: unknown): LayersConversion {
  const model = modelOfTopology(modelTopology);
  const converter = new TopologyConverter(runtime);
  const { values, names } = converter.convertModel(model);
  const outputs: Record<string, string> = {};
  values.forEach((value, i) => {
    const wanted = sanitize(names[i]!);
    // An output keeps its layer's name unless that name already stands for another value.
    const name = wanted === value || !(wanted in outputs || converter.isTaken(wanted)) ? wanted : value;
    if (name in outputs && outputs[name] !== value) {
      throw modelFileError(`Two outputs of the model are named '${name}'.`);
    }
    outputs[name] = value;
  });
  const graph = converter.builder.build(outputs);
  return { graph, weightNames: converter.weightNames(graph) };
}
