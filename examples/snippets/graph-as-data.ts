// A dynn graph is plain JSON data. docs/concepts.md quotes this file and `tiny-graph.json`, the
// JSON it writes; CI checks that the two agree.
import { createRuntime, GraphBuilder } from '@dynn/core';

/** Builds a one-layer classifier and returns its graph as JSON text: data, with no tensor in it. */
export function tinyGraphJson(): string {
  // #region build
  const runtime = createRuntime();
  const b = new GraphBuilder(runtime);
  const x = b.input('x', 'float32', ['batch', 4]);
  const logits = b.add('core.Dense', x, { units: 3 }, { name: 'classifier' });
  const graph = b.build({ logits });
  const json = JSON.stringify(graph, null, 2); // below: plain data to save, diff, validate and transform
  // #endregion build
  return json;
}
