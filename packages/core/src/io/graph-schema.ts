import {
  type Attrs,
  type Dim,
  type DType,
  type Graph,
  type GraphNode,
  type Initializer,
  SPEC_VERSION,
  splitOpType,
  type TensorInfo,
  type ValueInfo,
} from '../ir.js';
import type { LoadLimits } from './limits.js';
import { DAMAGED_FIX, limitError, modelFileError } from './model-file-error.js';

/** The dtypes a model file may hold, with their size in bytes per element. */
export const DTYPE_BYTES: Readonly<Record<DType, number>> = Object.freeze({ float32: 4, int32: 4, bool: 1 });

const OP_TYPE = /^[a-z][a-z0-9-]*\.[A-Z][A-Za-z0-9]*$/;
const DOMAIN = /^[a-z][a-z0-9-]*$/;

/** Reads untrusted data field by field, throwing a `MODEL_FILE` error that names the file and the path of the bad field. */
export class SchemaReader {
  /** `fix` is the advice every error ends with. */
  constructor(
    readonly file: string,
    readonly limits: LoadLimits,
    readonly fix: string = DAMAGED_FIX,
  ) {}

  /** Throws a `MODEL_FILE` error about the field at `path`. */
  fail(path: string, problem: string): never {
    throw modelFileError(this.file, `${path} ${problem}.`, this.fix);
  }

  /** `value` as a plain object. */
  object(value: unknown, path: string): Record<string, unknown> {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      this.fail(path, 'must be an object');
    }
    return value as Record<string, unknown>;
  }

  /** `value` as an array of at most `maxListLength` entries. */
  list(value: unknown, path: string): unknown[] {
    if (!Array.isArray(value)) this.fail(path, 'must be an array');
    if (value.length > this.limits.maxListLength) {
      throw limitError(
        this.file,
        `${path} has ${value.length} entries, which`,
        'maxListLength',
        this.limits.maxListLength,
      );
    }
    return value;
  }

  /** `value` as a non-empty string of at most `maxNameLength` characters. */
  name(value: unknown, path: string): string {
    if (typeof value !== 'string' || value.length === 0) this.fail(path, 'must be a non-empty string');
    if (value.length > this.limits.maxNameLength) {
      throw limitError(
        this.file,
        `${path} is ${value.length} characters long, which`,
        'maxNameLength',
        this.limits.maxNameLength,
      );
    }
    return value;
  }

  /** `value` as a finite number. */
  number(value: unknown, path: string): number {
    if (typeof value !== 'number' || !Number.isFinite(value)) this.fail(path, 'must be a finite number');
    return value;
  }

  /** `value` as a dtype a model file may hold. */
  dtype(value: unknown, path: string): DType {
    if (typeof value !== 'string' || !Object.hasOwn(DTYPE_BYTES, value)) {
      this.fail(path, `is ${JSON.stringify(value)}; expected one of ${Object.keys(DTYPE_BYTES).join(', ')}`);
    }
    return value as DType;
  }

  /** `value` as a shape: non-negative integers, or also symbolic names when `symbolic`. */
  shape(value: unknown, path: string, symbolic: true): Dim[];
  shape(value: unknown, path: string, symbolic: false): number[];
  shape(value: unknown, path: string, symbolic: boolean): Dim[] {
    if (!Array.isArray(value)) this.fail(path, 'must be an array of dimensions');
    if (value.length > this.limits.maxRank) {
      throw limitError(
        this.file,
        `${path} has ${value.length} dimensions, which`,
        'maxRank',
        this.limits.maxRank,
      );
    }
    return value.map((dim: unknown, i) => {
      if (typeof dim === 'number' && Number.isSafeInteger(dim) && dim >= 0) return dim;
      if (symbolic && typeof dim === 'string') return this.name(dim, `${path}[${i}]`);
      return this.fail(
        `${path}[${i}]`,
        `is ${JSON.stringify(dim)}; a dimension must be a non-negative integer${symbolic ? ' or a symbolic name' : ''}`,
      );
    });
  }

  /** The element count of a concrete shape; throws when it exceeds `maxTensorElements`. */
  elementCount(shape: readonly number[], path: string): number {
    if (shape.includes(0)) return 0;
    let count = 1;
    // Every dim is a positive integer here, so the product only grows: once past the limit it stays past.
    for (const dim of shape) count *= dim;
    if (count > this.limits.maxTensorElements) {
      throw limitError(
        this.file,
        `${path} [${shape.join(', ')}] has ${count} elements, which`,
        'maxTensorElements',
        this.limits.maxTensorElements,
      );
    }
    return count;
  }

  /** Throws when the total weight bytes exceed `maxWeightBytes`. */
  weightBytes(total: number, what: string): void {
    if (total > this.limits.maxWeightBytes) {
      throw limitError(
        this.file,
        `${what} hold ${total} bytes, which`,
        'maxWeightBytes',
        this.limits.maxWeightBytes,
      );
    }
  }
}

function valueInfo(r: SchemaReader, value: unknown, path: string): ValueInfo {
  const o = r.object(value, path);
  return {
    name: r.name(o.name, `${path}.name`),
    dtype: r.dtype(o.dtype, `${path}.dtype`),
    shape: r.shape(o.shape, `${path}.shape`, true),
  };
}

function initializer(r: SchemaReader, value: unknown, path: string): Initializer {
  const o = r.object(value, path);
  const num = (key: string) => r.number(o[key], `${path}.${key}`);
  switch (o.kind) {
    case 'zeros':
    case 'ones':
      return { kind: o.kind };
    case 'constant':
      return { kind: 'constant', value: num('value') };
    case 'glorotUniform':
      return { kind: 'glorotUniform', fanIn: num('fanIn'), fanOut: num('fanOut') };
    case 'heNormal':
      return { kind: 'heNormal', fanIn: num('fanIn') };
    case 'uniform':
      return { kind: 'uniform', min: num('min'), max: num('max') };
    case 'normal':
      return { kind: 'normal', mean: num('mean'), std: num('std') };
    default:
      return r.fail(`${path}.kind`, `is ${JSON.stringify(o.kind)}, not a known initializer`);
  }
}

function tensorInfo(r: SchemaReader, value: unknown, path: string): TensorInfo {
  const o = r.object(value, path);
  const shape = r.shape(o.shape, `${path}.shape`, false);
  r.elementCount(shape, `${path}.shape`);
  return {
    name: r.name(o.name, `${path}.name`),
    dtype: r.dtype(o.dtype, `${path}.dtype`),
    shape,
    init: initializer(r, o.init, `${path}.init`),
  };
}

function graphNode(r: SchemaReader, value: unknown, path: string, opsets: Record<string, number>): GraphNode {
  const o = r.object(value, path);
  const op = r.name(o.op, `${path}.op`);
  if (!OP_TYPE.test(op)) r.fail(`${path}.op`, `is '${op}', not an op type of the form 'domain.Name'`);
  const { domain } = splitOpType(op);
  if (!Object.hasOwn(opsets, domain)) {
    r.fail(`${path}.op`, `is '${op}', but the graph's opsets do not list domain '${domain}'`);
  }
  const names = (key: string) =>
    r.list(o[key], `${path}.${key}`).map((n, i) => r.name(n, `${path}.${key}[${i}]`));
  return {
    name: r.name(o.name, `${path}.name`),
    op,
    inputs: names('inputs'),
    outputs: names('outputs'),
    // Attribute values were checked to be plain JSON; each op checks its own attributes when the graph is validated.
    attrs: r.object(o.attrs, `${path}.attrs`) as Attrs,
  };
}

/**
 * Checks that untrusted data (already checked to be plain JSON) has the structure of a
 * {@link Graph}: every field's type, names non-empty and bounded, lists bounded, shapes of
 * non-negative integers (or symbolic names for values), known dtypes and initializers, each
 * weight tensor and all of them together within the size limits. Returns a fresh graph holding
 * only the known fields. Throws a `MODEL_FILE` error naming `file` and the bad field and ending
 * with `fix`.
 */
export function checkGraphSchema(
  value: unknown,
  file: string,
  limits: LoadLimits,
  path = 'modelTopology',
  fix = DAMAGED_FIX,
): Graph {
  const r: SchemaReader = new SchemaReader(file, limits, fix);
  const o = r.object(value, path);
  const version = o.specVersion;
  if (typeof version === 'number' && Number.isInteger(version) && version > SPEC_VERSION) {
    throw modelFileError(
      file,
      `uses graph spec version ${version}, but this @dynn/core reads version ${SPEC_VERSION}.`,
      'Upgrade @dynn/core to load it.',
    );
  }
  if (version !== SPEC_VERSION) {
    r.fail(`${path}.specVersion`, `is ${JSON.stringify(version)}; expected ${SPEC_VERSION}`);
  }
  const opsetsIn = r.object(o.opsets, `${path}.opsets`);
  const opsets: Record<string, number> = {};
  const domains = Object.keys(opsetsIn);
  if (domains.length > limits.maxListLength) {
    throw limitError(
      file,
      `${path}.opsets has ${domains.length} domains, which`,
      'maxListLength',
      limits.maxListLength,
    );
  }
  for (const domain of domains) {
    const at = `${path}.opsets.${domain}`;
    if (!DOMAIN.test(domain)) r.fail(at, 'is not a domain name (lower case letters, digits and dashes)');
    const opset = opsetsIn[domain];
    if (typeof opset !== 'number' || !Number.isSafeInteger(opset) || opset < 1) {
      r.fail(at, 'must be an integer >= 1');
    }
    opsets[domain] = opset;
  }
  const params = r.list(o.params, `${path}.params`).map((t, i) => tensorInfo(r, t, `${path}.params[${i}]`));
  const state = r.list(o.state, `${path}.state`).map((t, i) => tensorInfo(r, t, `${path}.state[${i}]`));
  let bytes = 0;
  const tensorNames = new Set<string>();
  for (const t of [...params, ...state]) {
    if (tensorNames.has(t.name)) {
      r.fail(`${path}.params and ${path}.state`, `declare tensor '${t.name}' twice`);
    }
    tensorNames.add(t.name);
    bytes += t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
  }
  r.weightBytes(bytes, `${path}.params and ${path}.state`);
  return {
    specVersion: SPEC_VERSION,
    opsets,
    inputs: r.list(o.inputs, `${path}.inputs`).map((v, i) => valueInfo(r, v, `${path}.inputs[${i}]`)),
    outputs: r.list(o.outputs, `${path}.outputs`).map((v, i) => valueInfo(r, v, `${path}.outputs[${i}]`)),
    nodes: r.list(o.nodes, `${path}.nodes`).map((n, i) => graphNode(r, n, `${path}.nodes[${i}]`, opsets)),
    params,
    state,
  };
}
