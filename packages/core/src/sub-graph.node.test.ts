import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expectClose, expectNoLeaks, routingPlugin, seededUniform } from '@dynn/testing';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { useBackend } from './backend.js';
import { GraphBuilder } from './builder.js';
import { isDynnError } from './errors.js';
import { loadModel } from './io/load-model.js';
import { saveModel } from './io/save-model.js';
import type { Graph, SubGraph } from './ir.js';
import { createModel } from './model.js';
import { createRuntime } from './runtime.js';
import { validateGraph } from './validate.js';

const runtime = createRuntime({ plugins: [routingPlugin] });
let folder: string;

beforeAll(async () => {
  await useBackend('cpu');
  folder = await mkdtemp(join(tmpdir(), 'dynn-sub-graph-'));
});
afterAll(async () => {
  await rm(folder, { recursive: true, force: true });
});

/**
 * Two levels of nesting: a router over sequences whose left branch is an RNN (a `core.Scan` with
 * a cell) and whose right branch reads the last position.
 */
function nestedGraph(): Graph {
  const cell = new GraphBuilder(runtime);
  const h = cell.input('h', 'float32', ['batch', 6]);
  const x = cell.input('x', 'float32', ['batch', 4]);
  const next = cell.add(
    'core.Dense',
    cell.add('core.Concat', [h, x]),
    { units: 6, activation: 'tanh' },
    { name: 'cell' },
  );
  const left = new GraphBuilder(runtime);
  const seq = left.input('seq', 'float32', ['batch', 'time', 4]);
  const h0 = left.add(
    'core.Dense',
    left.add('core.TimeStep', seq, { index: 0 }),
    { units: 6 },
    { name: 'init' },
  );
  const [last] = left.addMulti('core.Scan', [h0, seq], { body: cell.subGraph({ next }) }, { name: 'rnn' });
  const right = new GraphBuilder(runtime);
  const seq2 = right.input('seq', 'float32', ['batch', 'time', 4]);
  const tail = right.add(
    'core.Dense',
    right.add('core.TimeStep', seq2, { index: -1 }),
    { units: 6 },
    { name: 'tail' },
  );
  const b = new GraphBuilder(runtime);
  const input = b.input('seq', 'float32', ['batch', 'time', 4]);
  const routed = b.add(
    'testing.RouteRows',
    input,
    { left: left.subGraph({ last: last! }), right: right.subGraph({ tail }) },
    { name: 'route' },
  );
  return b.build({ y: b.add('core.Dense', routed, { units: 2 }, { name: 'head' }) });
}

it('names nested parameters by path and round-trips a nested model through a file', async () => {
  const graph = nestedGraph();
  expect(graph.params.map((p) => p.name)).toEqual([
    'route/kernel',
    'route/bias',
    'route/left/init/kernel',
    'route/left/init/bias',
    'route/left/rnn/body/cell/kernel',
    'route/left/rnn/body/cell/bias',
    'route/right/tail/kernel',
    'route/right/tail/bias',
    'head/kernel',
    'head/bias',
  ]);
  const model = createModel(runtime, graph, { seed: 4 });
  const x = seededUniform([6, 5, 4], { seed: 5, min: -1, max: 1 });
  await saveModel(model, join(folder, 'nested'));
  await expectNoLeaks(async () => {
    const loaded = await loadModel(runtime, join(folder, 'nested', 'model.json'));
    const a = await model.run(x);
    const b = await loaded.run(x);
    await expectClose(b.outputs.y!, a.outputs.y!);
    expect(b.report!.nodes.map((n) => n.name)).toEqual(a.report!.nodes.map((n) => n.name));
    expect(a.report!.nodes.map((n) => n.name)).toContain('route/left/rnn/body/cell');
    tf.dispose([...Object.values(a.outputs), ...Object.values(b.outputs)]);
    loaded.dispose();
  });
  x.dispose();
  model.dispose();
});

function expectRefused(graph: Graph, code: string, pattern: RegExp): void {
  let error: unknown;
  try {
    validateGraph(runtime, graph);
  } catch (e) {
    error = e;
  }
  expect(isDynnError(error) && error.code).toBe(code);
  expect((error as Error).message).toMatch(pattern);
}

/** The nested graph with its RNN body changed by `edit`. */
function withBody(edit: (body: SubGraph) => void): Graph {
  const graph = structuredClone(nestedGraph());
  const left = graph.nodes[0]!.attrs.left as SubGraph;
  edit(left.nodes.find((n) => n.name === 'rnn')!.attrs.body as SubGraph);
  return graph;
}

it('refuses bad nested graphs, naming the full path of the bad node', () => {
  expectRefused(
    withBody((body) => {
      body.nodes[1]!.op = 'core.Densest';
    }),
    'UNKNOWN_OP',
    /op 'core\.Densest' \(node 'route\/left\/rnn\/body\/cell'\)/,
  );
  expectRefused(
    withBody((body) => {
      body.nodes[1]!.attrs.units = 7;
    }),
    'SHAPE_MISMATCH',
    /route\/left\/rnn/,
  );
  expectRefused(
    withBody((body) => {
      (body as unknown as { nodes: unknown }).nodes = 5;
    }),
    'INVALID_ATTR',
    /Node 'route\/left\/rnn' \(core\.Scan\): attribute 'body' must be a graph: its 'nodes' must be an array/,
  );
  expectRefused(
    withBody((body) => {
      (body as unknown as { params: unknown[] }).params = [{ name: 'x' }];
    }),
    'INVALID_ATTR',
    /declares params; a sub-graph's params are declared by the top graph/,
  );
  // A deciding op cannot sit in a sub-graph: its enclosing op runs it synchronously.
  const router = structuredClone(nestedGraph().nodes[0]!);
  expectRefused(
    withBody((body) => {
      body.nodes.push({ ...router, name: 'inner', inputs: ['next'], outputs: ['routed'] });
    }),
    'INVALID_GRAPH',
    /Node 'route\/left\/rnn\/body\/inner' \(testing\.RouteRows\) decides/,
  );
  // The top graph must declare nested parameters.
  const missing = nestedGraph();
  missing.params = missing.params.filter((p) => p.name !== 'route/left/rnn/body/cell/bias');
  expectRefused(missing, 'INVALID_GRAPH', /lack 'route\/left\/rnn\/body\/cell\/bias'/);
});

it('refuses a model file with a bad nested graph at load, naming the file and the node', async () => {
  const model = createModel(runtime, nestedGraph(), { seed: 4 });
  const dir = join(folder, 'bad');
  await saveModel(model, dir);
  model.dispose();
  const file = join(dir, 'model.json');
  const json = JSON.parse(await readFile(file, 'utf8'));
  const rnn = json.modelTopology.nodes[0].attrs.left.nodes.find((n: { name: string }) => n.name === 'rnn');
  rnn.attrs.body.nodes[1].op = 'evil.Payload';
  await writeFile(file, JSON.stringify(json));
  const before = tf.memory().numTensors;
  let error: unknown;
  try {
    await loadModel(runtime, file);
  } catch (e) {
    error = e;
  }
  expect(isDynnError(error) && error.code).toBe('UNKNOWN_OP');
  expect((error as Error).message).toContain(file);
  expect((error as Error).message).toMatch(/evil\.Payload.*route\/left\/rnn\/body\/cell/);
  expect(tf.memory().numTensors).toBe(before);
});

it('gives one value several output names, and outputs a graph input, through identity nodes', async () => {
  const b = new GraphBuilder(runtime);
  const h = b.input('h', 'float32', ['batch', 3]);
  const next = b.add('core.Dense', h, { units: 3, activation: 'tanh' }, { name: 'cell' });
  const body = b.subGraph({ next, state: next, echo: h });
  expect(body.outputs.map((o) => o.name)).toEqual(['next', 'state', 'echo']);
  expect(body.nodes.map((n) => `${n.op} ${n.inputs} -> ${n.outputs}`)).toEqual([
    'core.Dense h -> next',
    'core.Identity next -> state',
    'core.Identity h -> echo',
  ]);
  const graph = b.build({ next, state: next });
  const model = createModel(runtime, graph);
  const x = tf.ones([2, 3]);
  const { outputs } = await model.run(x, { report: false });
  await expectClose(outputs.state!, outputs.next!);
  tf.dispose([x, ...Object.values(outputs)]);
  model.dispose();
});
