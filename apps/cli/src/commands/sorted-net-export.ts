import { join, resolve } from 'node:path';
import {
  createModel,
  createRuntime,
  DynnError,
  type Graph,
  loadModel,
  type Model,
  type Runtime,
  runPass,
  saveModel,
} from '@dynn/core';
import {
  describeNesting,
  type ExportOptions,
  type Nesting,
  type SubNetwork,
  subNetworkKey,
} from '@dynn/sorted-net';
import * as tf from '@tensorflow/tfjs-core';

/** The sub-network `dynn sorted-net export` is asked for, as the flags give it (text). */
export interface SortedNetExportFlags {
  /** `--width`: one fraction, or `knob=fraction,...`. */
  width?: string;
  /** `--depth`: one block count, or one per stage `n,n,...`. */
  depth?: string;
  /** `--kernel`: one size, or `node=size,...`. */
  kernel?: string;
  /** Fold batch norms into the layers before them (default true; false keeps them, to train further). */
  foldBatchNorm?: boolean;
}

/** What `dynn sorted-net export` wrote and measured. */
export interface SortedNetExportResult {
  /** The `model.json` written. */
  file: string;
  /** The nested model read. */
  source: string;
  /** The sub-network exported, as run options name it. */
  subNetwork: SubNetwork;
  /** Its short name (`w0.5-d1`). */
  key: string;
  /** Parameter elements of the nested model and of the exported one. */
  params: { before: number; after: number };
  /** FLOPs per sample, in millions: the nested model's full network and the exported one. */
  mflopsPerSample: { before: number; after: number };
  /** Plugins the exported graph still needs (empty: a plain `createRuntime()` loads it). */
  domains: string[];
}

function badFlag(flag: string, value: string, problem: string): DynnError {
  return new DynnError('INVALID_OPTION', `${flag} ${value}: ${problem}`);
}

/** `a=1,b=2` or a bare value: the pairs, or the one value. */
function splitChoice(value: string): { all: string } | { each: [string, string][] } {
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (items.length === 1 && !items[0]!.includes('=')) return { all: items[0]! };
  return {
    each: items.map((item) => {
      // Knob names hold '#' and may hold '=' nowhere but the separator: split at the last one.
      const at = item.lastIndexOf('=');
      return at < 0 ? [item, ''] : [item.slice(0, at), item.slice(at + 1)];
    }),
  };
}

function fraction(flag: string, given: string, text: string): number {
  const n = text.trim() === '' ? Number.NaN : Number(text);
  if (!Number.isFinite(n) || n <= 0 || n > 1) {
    throw badFlag(
      flag,
      given,
      `a width is the fraction of a layer's channels kept, in (0, 1], got '${text}'. Give e.g. --width 0.5, or per knob --width <knob>=0.5,<knob>=0.25.`,
    );
  }
  return n;
}

function count(flag: string, given: string, text: string, min: number, what: string): number {
  const n = text.trim() === '' ? Number.NaN : Number(text);
  if (!Number.isInteger(n) || n < min) {
    throw badFlag(flag, given, `${what} must be an integer >= ${min}, got '${text}'.`);
  }
  return n;
}

/**
 * The {@link SubNetwork} the flags choose, checked against what the nested graph offers (its
 * width knobs, depth stages and elastic kernels), so a typo fails here, naming `file` and the
 * choices, instead of deep inside the export pass.
 */
export function subNetworkFromFlags(flags: SortedNetExportFlags, nesting: Nesting, file: string): SubNetwork {
  const sub: SubNetwork = {};
  if (flags.width !== undefined) {
    const choice = splitChoice(flags.width);
    if (nesting.knobs.length === 0) {
      throw badFlag(
        '--width',
        flags.width,
        `${file} has no width knobs (nothing narrows); leave --width out.`,
      );
    }
    if ('all' in choice) sub.width = fraction('--width', flags.width, choice.all);
    else {
      const known = new Set(nesting.knobs.map((k) => k.name));
      const width: Record<string, number> = {};
      for (const [knob, value] of choice.each) {
        if (!known.has(knob)) {
          throw badFlag(
            '--width',
            flags.width,
            `${file} has no width knob '${knob}'. Its knobs: ${[...known].join(', ')}.`,
          );
        }
        width[knob] = fraction('--width', flags.width, value);
      }
      sub.width = width;
    }
  }
  if (flags.depth !== undefined) {
    const { stages } = nesting;
    if (stages.length === 0) {
      throw badFlag(
        '--depth',
        flags.depth,
        `${file} has no depth-nested residual blocks; leave --depth out.`,
      );
    }
    const items = flags.depth.split(',').map((s) => s.trim());
    if (items.length !== 1 && items.length !== stages.length) {
      throw badFlag(
        '--depth',
        flags.depth,
        `${file} has ${stages.length} stages: give one block count for all, or ${stages.length} separated by commas.`,
      );
    }
    const depths = items.map((item) => count('--depth', flags.depth!, item, 0, 'a block count'));
    depths.forEach((d, i) => {
      const limit = Math.min(...(items.length === 1 ? stages : [stages[i]!]).map((s) => s.blocks.length));
      if (d > limit) {
        throw badFlag(
          '--depth',
          flags.depth!,
          `${items.length === 1 ? 'a stage' : `stage ${i}`} of ${file} has ${limit} residual blocks: give 0 to ${limit}.`,
        );
      }
    });
    sub.depth = depths.length === 1 ? depths[0]! : depths;
  }
  if (flags.kernel !== undefined) {
    const { kernels } = nesting;
    if (kernels.length === 0) {
      throw badFlag('--kernel', flags.kernel, `${file} has no elastic kernels; leave --kernel out.`);
    }
    const choice = splitChoice(flags.kernel);
    const check = (layer: { node: string; sizes: number[] }, size: number) => {
      if (!layer.sizes.includes(size)) {
        throw badFlag(
          '--kernel',
          flags.kernel!,
          `layer '${layer.node}' of ${file} takes kernel sizes ${layer.sizes.join(', ')}, not ${size}.`,
        );
      }
    };
    if ('all' in choice) {
      const size = count('--kernel', flags.kernel, choice.all, 1, 'a kernel size');
      for (const layer of kernels) check(layer, size);
      sub.kernel = size;
    } else {
      const kernel: Record<string, number> = {};
      for (const [node, value] of choice.each) {
        const layer = kernels.find((k) => k.node === node);
        if (layer === undefined) {
          throw badFlag(
            '--kernel',
            flags.kernel,
            `${file} has no elastic kernel '${node}'. Its elastic layers: ${kernels.map((k) => k.node).join(', ')}.`,
          );
        }
        kernel[node] = count('--kernel', flags.kernel, value, 1, 'a kernel size');
        check(layer, kernel[node]!);
      }
      sub.kernel = kernel;
    }
  }
  return sub;
}

/** One row of zeros per graph input (symbolic sizes other than the batch at 1). */
function sampleInputs(graph: Graph): Record<string, tf.Tensor> {
  return Object.fromEntries(
    graph.inputs.map((input) => [
      input.name,
      tf.zeros(
        input.shape.map((d) => (typeof d === 'number' ? d : 1)),
        input.dtype as tf.DataType,
      ),
    ]),
  );
}

/**
 * FLOPs per sample the compute report counts for one row of zeros (the cost of every op here
 * depends on shapes, not values), with `options` selecting a sub-network or none.
 */
export async function flopsPerSample(model: Model, options?: Parameters<Model['run']>[1]): Promise<number> {
  const inputs = sampleInputs(model.graph);
  try {
    const { outputs, report } = await model.run(inputs, { ...options, report: true });
    tf.dispose(Object.values(outputs));
    return report!.flops;
  } finally {
    tf.dispose(Object.values(inputs));
  }
}

function describeSource(model: Model, file: string): Nesting {
  const nesting = describeNesting(model.graph);
  if (nesting.knobs.length + nesting.stages.length + nesting.kernels.length === 0) {
    throw new DynnError(
      'INVALID_GRAPH',
      `${file} is not a nested model: it has no sorted-net layers (no width knobs, depth stages or elastic kernels). ` +
        'Nest it first (nestModel(model, { multiple }) from @dynn/sorted-net, then sorted training), save it with saveModel, and export from that file.',
      { file },
    );
  }
  return nesting;
}

/**
 * Loads a nested dynn model with `runtime` (which must hold `sortedNet()`), exports the
 * sub-network the flags choose with the pass `sorted-net.export` and saves it into `outDir`: a
 * standalone model of plain ops, physically smaller, that a runtime without sorted-net loads.
 * Returns what it wrote, with parameters and FLOPs per sample before and after.
 */
export async function exportSubNetworkFile(
  runtime: Runtime,
  source: string,
  outDir: string,
  flags: SortedNetExportFlags,
): Promise<SortedNetExportResult> {
  const file = resolve(source);
  const model = await loadModel(runtime, file);
  try {
    const sub = subNetworkFromFlags(flags, describeSource(model, file), file);
    const exported = runPass<ExportOptions>(runtime, 'sorted-net.export', model, {
      ...sub,
      foldBatchNorm: flags.foldBatchNorm ?? true,
    });
    let small: Model | undefined;
    try {
      // The exported graph declares its own (smaller) tensors; count and measure it as a model.
      small = createModel(runtime, exported.graph, { weights: exported.weights });
      await saveModel(small, resolve(outDir));
      // A runtime without plugins must load the file: name any op domain that it lacks.
      const plain = createRuntime();
      const domains = [
        ...new Set(
          exported.graph.nodes.filter((n) => !plain.hasOp(n.op)).map((n) => n.op.slice(0, n.op.indexOf('.'))),
        ),
      ];
      return {
        file: join(resolve(outDir), 'model.json'),
        source: file,
        subNetwork: sub,
        key: subNetworkKey(sub),
        params: { before: model.paramCount, after: small.paramCount },
        mflopsPerSample: {
          before: (await flopsPerSample(model)) / 1e6,
          after: (await flopsPerSample(small)) / 1e6,
        },
        domains,
      };
    } finally {
      if (small === undefined) tf.dispose([...exported.weights.values()]);
      else small.dispose();
    }
  } finally {
    model.dispose();
  }
}

/** What `dynn sorted-net export` prints. */
export function formatExportResult(result: SortedNetExportResult): string {
  const ratio = (before: number, after: number) =>
    after > 0 ? ` (${(before / after).toFixed(2)}x fewer)` : '';
  const { params, mflopsPerSample: flops } = result;
  return [
    `wrote ${result.file}: sub-network ${result.key} of ${result.source}`,
    `  params: ${params.before.toLocaleString('en-US')} -> ${params.after.toLocaleString('en-US')}${ratio(params.before, params.after)}`,
    `  MFLOPs per sample: ${flops.before.toFixed(3)} -> ${flops.after.toFixed(3)}${ratio(flops.before, flops.after)}`,
    result.domains.length === 0
      ? '  ops: core only (a runtime without sortedNet() loads it)'
      : `  ops: needs the plugins of ${result.domains.join(', ')} besides core`,
    '',
  ].join('\n');
}
