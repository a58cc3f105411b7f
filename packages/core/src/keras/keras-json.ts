import { DynnError } from '../errors.js';

/** A JSON object read from a model file. */
export type JsonObject = Record<string, unknown>;

/** One layer of a Keras model config: its class, name and (snake_case) config. */
export interface KerasLayer {
  className: string;
  name: string;
  config: JsonObject;
  /** The raw `inbound_nodes` of a layer of a functional model (absent in a Sequential). */
  inboundNodes: unknown[];
}

/** A reference to one output of one call of a layer: `[layer name, node index, tensor index]`. */
export interface TensorRef {
  layer: string;
  node: number;
  tensor: number;
}

/** A Keras model config: `Sequential`, or a functional `Model` / `Functional`. */
export interface KerasModel {
  className: string;
  name: string;
  config: JsonObject;
}

/** Class names of functional (graph) models. */
export const FUNCTIONAL_CLASSES = ['Model', 'Functional'] as const;

/** Class names of models, which may also appear as layers of another model. */
export const MODEL_CLASSES = ['Sequential', ...FUNCTIONAL_CLASSES] as const;

/** An error about the structure of the model file. */
export function modelFileError(message: string, layer?: string): DynnError {
  return new DynnError('MODEL_FILE', message, layer === undefined ? {} : { node: layer });
}

/** True for a plain JSON object (not an array, not null). */
export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The model config inside a `modelTopology`: tfjs-layers stores the config itself
 * (`{class_name, config}`), the Keras converter wraps it (`{model_config: {class_name, config}}`).
 * A JSON string is parsed first.
 */
export function modelOfTopology(topology: unknown): KerasModel {
  const parsed = typeof topology === 'string' ? parseJson(topology) : topology;
  if (!isObject(parsed)) {
    throw modelFileError(
      'The model topology is not a JSON object; a tfjs-layers / Keras model.json holds one.',
    );
  }
  const model = isObject(parsed.model_config) ? parsed.model_config : parsed;
  const className = model.class_name;
  if (typeof className !== 'string' || !(MODEL_CLASSES as readonly string[]).includes(className)) {
    throw modelFileError(
      `The model topology's class_name is ${JSON.stringify(className)}; expected one of ${MODEL_CLASSES.join(', ')} ` +
        '(a tfjs-layers or Keras model.json, not a graph model).',
    );
  }
  return modelOf(className, model.config);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw modelFileError(`The model topology is not valid JSON: ${(error as Error).message}`);
  }
}

/** Reads a model config (top-level, or a model nested as a layer). Old Sequentials store a bare layer list. */
export function modelOf(className: string, config: unknown, fallbackName = 'model'): KerasModel {
  const normalized = Array.isArray(config) ? { layers: config } : config;
  if (!isObject(normalized)) throw modelFileError(`The ${className} model has no config object.`);
  const name = typeof normalized.name === 'string' ? normalized.name : fallbackName;
  return { className, name, config: normalized };
}

/** The layers of a model config. */
export function layersOf(model: KerasModel): KerasLayer[] {
  const layers = model.config.layers;
  if (!Array.isArray(layers)) {
    throw modelFileError(`The ${model.className} model '${model.name}' has no layer list.`);
  }
  return layers.map((raw, i) => {
    if (!isObject(raw) || typeof raw.class_name !== 'string') {
      throw modelFileError(`Layer ${i} of model '${model.name}' has no class_name.`);
    }
    const config = isObject(raw.config)
      ? raw.config
      : Array.isArray(raw.config)
        ? { layers: raw.config }
        : {};
    const name =
      typeof raw.name === 'string' ? raw.name : typeof config.name === 'string' ? config.name : undefined;
    if (name === undefined) {
      throw modelFileError(`Layer ${i} (${raw.class_name}) of model '${model.name}' has no name.`);
    }
    return {
      className: raw.class_name,
      name,
      config,
      inboundNodes: Array.isArray(raw.inbound_nodes) ? raw.inbound_nodes : [],
    };
  });
}

/** Reads `[layer, node, tensor]`, or returns undefined when `value` is not such a triple. */
function tensorRefOf(value: unknown): TensorRef | undefined {
  if (!Array.isArray(value) || typeof value[0] !== 'string') return undefined;
  const [layer, node = 0, tensor = 0] = value;
  if (typeof node !== 'number' || typeof tensor !== 'number') return undefined;
  return { layer, node, tensor };
}

/**
 * Reads `input_layers` / `output_layers`: a list of `[layer, node, tensor]` triples, one triple
 * alone (Keras 3, single input), or an object of triples (Keras 3, inputs given as a dict).
 */
export function tensorRefsOf(value: unknown, what: string, model: string): TensorRef[] {
  const single = tensorRefOf(value);
  if (single !== undefined) return [single];
  const items = Array.isArray(value) ? value : isObject(value) ? Object.values(value) : undefined;
  const refs = items?.map(tensorRefOf);
  if (refs === undefined || refs.length === 0 || refs.some((ref) => ref === undefined)) {
    throw modelFileError(
      `Model '${model}' has no valid ${what} (expected [layer name, node index, tensor index] entries).`,
    );
  }
  return refs as TensorRef[];
}

/**
 * The input tensors of each call of a layer, from its `inbound_nodes`: Keras 2 / tfjs-layers
 * write each call as a list of `[layer, node, tensor, kwargs]`; Keras 3 writes
 * `{args, kwargs}` whose args hold `__keras_tensor__` objects with a `keras_history` triple.
 */
export function inboundCallsOf(layer: KerasLayer): TensorRef[][] {
  return layer.inboundNodes.map((call) => {
    if (Array.isArray(call)) {
      return call.map((entry) => {
        const ref = tensorRefOf(entry);
        if (ref === undefined) {
          throw modelFileError(`Layer '${layer.name}' has a malformed inbound node.`, layer.name);
        }
        return ref;
      });
    }
    if (isObject(call)) {
      const refs: TensorRef[] = [];
      collectKerasTensors(call.args, refs);
      return refs;
    }
    throw modelFileError(`Layer '${layer.name}' has a malformed inbound node.`, layer.name);
  });
}

function collectKerasTensors(value: unknown, refs: TensorRef[]): void {
  if (Array.isArray(value)) {
    for (const item of value) collectKerasTensors(item, refs);
    return;
  }
  if (!isObject(value)) return;
  if (value.class_name === '__keras_tensor__' && isObject(value.config)) {
    const ref = tensorRefOf(value.config.keras_history);
    if (ref !== undefined) refs.push(ref);
    return;
  }
  for (const item of Object.values(value)) collectKerasTensors(item, refs);
}
