import { type ChannelAxis, type ChannelTensor, channelOfPosition, type OpChannels } from './channel-axes.js';
import { type CompiledGraph, type CompiledNode, compileGraph, findSubGraph } from './compile.js';
import { DynnError } from './errors.js';
import type { Graph } from './ir.js';
import type { Runtime } from './runtime.js';
import { ownersOf, type TensorOwner } from './tensor-owners.js';

/** One tensor axis in a channel group, and which channel each of its positions holds. */
export interface ChannelMember {
  /** A parameter, a state tensor or a value the graph computes. */
  kind: 'param' | 'state' | 'value';
  /** The tensor's or value's name (a value inside a sub-graph: `scan/body/h`). */
  name: string;
  /** The axis (non-negative). */
  axis: number;
  /** Per position of the axis, the group channel it holds (0 to `size` - 1). */
  channelOf: Int32Array;
  /** For a parameter or state tensor: the nodes that declare it. */
  owners?: readonly TensorOwner[];
}

/** An op channel space a group crosses: which node, which of its spaces, and each position's channel. */
export interface ChannelSpaceMember {
  /** The node's full name. */
  node: string;
  /** The space's name in the node's op declaration (`out`, `heads`). */
  space: string;
  /** Per position of the space, the group channel it holds. */
  channelOf: Int32Array;
}

/**
 * Channels that move together (DepGraph's dependency group): removing, reordering or masking
 * channel `c` of the group touches the positions holding `c` on every member axis. Found by
 * {@link channelGroups} from the ops' channel declarations.
 */
export interface ChannelGroup {
  /** Position in {@link ChannelAnalysis.groups}: what the channel passes take as `group`. */
  id: number;
  /** Number of channels. */
  size: number;
  /** Parameter axes holding the channels. */
  params: ChannelMember[];
  /** State axes holding them. */
  state: ChannelMember[];
  /** Value axes holding them (what the graph computes between nodes). */
  values: ChannelMember[];
  /** The nodes whose declarations the group crosses, in graph order. */
  nodes: string[];
  /** The op channel spaces the group crosses (a layer's `out`, attention `heads`), in graph order. */
  spaces: ChannelSpaceMember[];
  /**
   * Why some of the group's channels cannot change (a barrier, a graph input or output they
   * reach); empty when every channel can.
   */
  blockers: string[];
  /**
   * The channels that cannot change, ascending: those on an axis a blocker holds (a concatenation
   * of a graph input with a layer's output fixes the input's part only). All of them when the
   * whole group is blocked.
   */
  fixed: number[];
  /** True when removing channels equals masking them (no op mixes channels along the group). */
  exact: boolean;
}

/** An op that declares no channels: no channel crosses it. */
export interface ChannelBarrier {
  /** The node's full name. */
  node: string;
  /** Its op. */
  op: string;
}

/** What {@link channelGroups} finds. */
export interface ChannelAnalysis {
  /** Groups that hold at least one parameter or state axis, in order of first appearance. */
  groups: ChannelGroup[];
  /** Nodes whose op declares no channels. */
  barriers: ChannelBarrier[];
}

/** A tensor axis (or an op's channel space) with its positions. */
interface Instance {
  kind: 'param' | 'state' | 'value' | 'space';
  /** Tensor or value name; for a space, `<node path>#<space>`. */
  name: string;
  axis: number;
  size: number;
  /** Index of its first position in the union-find arrays. */
  base: number;
  /** For a space: the node path and the space's name. */
  space?: { node: string; name: string };
}

/** Position `j` of instance `from` holds channel `channelOfPosition(map, j)` of `to`. */
interface Link {
  from: number;
  to: number;
  map: ChannelAxis;
}

/** @internal The analysis with what the channel passes need. */
export interface ChannelGraph extends ChannelAnalysis {
  compiled: CompiledGraph;
  /** Per group id, its members with instance details. */
  members: Map<number, ChannelMember[]>;
  /** Per group id, the op channel spaces it crosses: node path, space name, channel per position. */
  spaces: Map<number, ChannelSpaceMember[]>;
}

function addToSet<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  const set = map.get(key);
  if (set === undefined) map.set(key, new Set([value]));
  else set.add(value);
}

class UnionFind {
  readonly parent: Int32Array;
  constructor(size: number) {
    this.parent = new Int32Array(size);
    for (let i = 0; i < size; i++) this.parent[i] = i;
  }
  find(i: number): number {
    let root = i;
    while (this.parent[root] !== root) root = this.parent[root]!;
    while (this.parent[i] !== root) {
      const next = this.parent[i]!;
      this.parent[i] = root;
      i = next;
    }
    return root;
  }
  union(a: number, b: number): void {
    const ra = this.find(a);
    const rb = this.find(b);
    if (ra !== rb) this.parent[Math.max(ra, rb)] = Math.min(ra, rb);
  }
}

/**
 * @internal The channel groups of a graph, with the compiled graph and the members the channel
 * passes rewrite.
 */
export function analyzeChannels(runtime: Runtime, graph: Graph): ChannelGraph {
  const compiled = compileGraph(runtime, graph);
  const owners = ownersOf(compiled);
  const instances: Instance[] = [];
  const byKey = new Map<string, number>();
  let positions = 0;
  const instance = (kind: Instance['kind'], name: string, axis: number, size: number): number => {
    const key = `${kind}:${name}:${axis}`;
    const found = byKey.get(key);
    if (found !== undefined) return found;
    instances.push({ kind, name, axis, size, base: positions });
    positions += size;
    byKey.set(key, instances.length - 1);
    return instances.length - 1;
  };
  const links: Link[] = [];
  const barriers: ChannelBarrier[] = [];
  const mixing = new Set<number>();
  /** Per value name, the places that read or write it (node paths, or `graph input`/`graph output`). */
  const touches = new Map<string, Set<string>>();
  /** Per value axis key (`name:axis`), the places that map it. */
  const mapped = new Map<string, Set<string>>();
  const nodeOfInstance = new Map<number, Set<string>>();
  const touch = (value: string, by: string) => addToSet(touches, value, by);
  const noteMapped = (value: string, axis: number, by: string) => addToSet(mapped, `${value}:${axis}`, by);

  // A sub-graph's inputs and outputs are touched by its enclosing node, which maps them through
  // `graph` references in its own declaration.
  const visitScope = (scope: CompiledGraph, boundary: string | undefined) => {
    const { prefix } = scope;
    const inputLabel = boundary ?? 'graph input';
    const outputLabel = boundary ?? 'graph output';
    for (const v of scope.graph.inputs) touch(`${prefix}${v.name}`, inputLabel);
    for (const v of scope.graph.outputs) touch(`${prefix}${v.name}`, outputLabel);
    for (const c of scope.nodes) {
      for (const name of c.node.inputs) touch(`${prefix}${name}`, c.path);
      for (const name of c.node.outputs) touch(`${prefix}${name}`, c.path);
      for (const sub of c.subGraphs) {
        visitScope(sub.compiled, c.path);
      }
      // An op without a declaration, or one that cannot declare these shapes (a channel count
      // only known per run, as a nested network's), is a barrier.
      let declaration: ReturnType<NonNullable<typeof c.def.channels>> | undefined;
      try {
        declaration = c.def.channels?.(c.attrs, c.inputs, c.outputs);
      } catch {
        declaration = undefined;
      }
      if (declaration === undefined) {
        barriers.push({ node: c.path, op: c.def.type });
        continue;
      }
      declareNode(c, prefix, declaration);
    }
  };

  const declareNode = (c: CompiledNode, prefix: string, declaration: OpChannels) => {
    const fail = (what: string): never => {
      throw new DynnError(
        'INVALID_GRAPH',
        `Node '${c.path}' (${c.def.type}) declares channels wrongly: ${what}.`,
        {
          node: c.path,
          op: c.def.type,
        },
      );
    };
    const spaces = new Map<string, number>();
    for (const [space, size] of Object.entries(declaration.spaces)) {
      if (!Number.isInteger(size) || size < 1) fail(`space '${space}' has size ${size}`);
      const id = instance('space', `${c.path}#${space}`, 0, size);
      instances[id]!.space = { node: c.path, name: space };
      spaces.set(space, id);
    }
    /** The instance kind, tensor names (a state tensor and its variants) and shape `tensor` stands for. */
    const resolve = (
      tensor: ChannelTensor,
    ): { kind: Instance['kind']; names: string[]; shape: readonly unknown[] } => {
      if ('name' in tensor) {
        const local = tensor.name;
        const list = (tensor.kind === 'param' ? c.params : c.state).filter((t) => t.local === local);
        if (list.length === 0) return fail(`it has no ${tensor.kind} '${local}'`);
        return { kind: tensor.kind, names: list.map((t) => t.info.name), shape: list[0]!.info.shape };
      }
      const { kind, index, graph: ref } = tensor;
      if (ref === undefined) {
        const info = (kind === 'input' ? c.inputs : c.outputs)[index];
        if (info === undefined) return fail(`it has no ${kind} ${index}`);
        const name = (kind === 'input' ? c.node.inputs : c.node.outputs)[index]!;
        return { kind: 'value', names: [`${prefix}${name}`], shape: info.shape };
      }
      const sub = findSubGraph(c, ref.attr, ref.index);
      if (sub === undefined) return fail(`it has no sub-graph '${ref.attr}'`);
      const value = (kind === 'input' ? sub.graph.inputs : sub.graph.outputs)[index];
      if (value === undefined) return fail(`its sub-graph '${sub.scope}' has no ${kind} ${index}`);
      const info = sub.compiled.values.get(value.name)!;
      return { kind: 'value', names: [`${sub.compiled.prefix}${value.name}`], shape: info.shape };
    };
    for (const entry of declaration.axes as ChannelAxis[]) {
      const space = spaces.get(entry.space);
      if (space === undefined) fail(`an axis names unknown space '${entry.space}'`);
      const spaceSize = instances[space!]!.size;
      const { kind, names, shape } = resolve(entry.tensor);
      const axis = entry.axis < 0 ? entry.axis + shape.length : entry.axis;
      if (axis < 0 || axis >= shape.length)
        fail(`axis ${entry.axis} is outside a tensor of rank ${shape.length}`);
      if (kind === 'value' && axis === 0) fail('axis 0 of a value is the batch');
      const size = shape[axis];
      if (typeof size !== 'number')
        return fail(`axis ${axis} of ${names[0]} is symbolic ('${String(size)}')`);
      const offset = entry.offset ?? 0;
      const block = entry.block ?? 1;
      const period = entry.period ?? Number.POSITIVE_INFINITY;
      const highest = offset + Math.min(period - 1, Math.floor((size - 1) / block));
      if (!(offset >= 0 && block >= 1 && period >= 1) || highest >= spaceSize) {
        fail(`axis ${axis} of ${names[0]} maps past space '${entry.space}' (size ${spaceSize})`);
      }
      for (const name of names) {
        const from = instance(kind, name, axis, size);
        links.push({ from, to: space!, map: entry });
        if (entry.mixes) mixing.add(from);
        if (kind === 'value') noteMapped(name, axis, c.path);
        addToSet(nodeOfInstance, from, c.path);
      }
    }
  };

  visitScope(compiled, undefined);
  const positionSets = new UnionFind(positions);
  const groupsOf = new UnionFind(instances.length);
  for (const link of links) {
    const from = instances[link.from]!;
    const to = instances[link.to]!;
    groupsOf.union(link.from, link.to);
    for (let j = 0; j < from.size; j++) {
      positionSets.union(from.base + j, to.base + channelOfPosition(link.map, j));
    }
  }

  const groups: ChannelGroup[] = [];
  const members = new Map<number, ChannelMember[]>();
  const groupSpaces: ChannelGraph['spaces'] = new Map();
  const groupIdOfRoot = new Map<number, number>();
  const channelIdOfRoot = new Map<number, number>();
  const groupInstances = new Map<number, number[]>();
  instances.forEach((_, i) => {
    const root = groupsOf.find(i);
    const list = groupInstances.get(root);
    if (list === undefined) groupInstances.set(root, [i]);
    else list.push(i);
  });
  for (const [root, list] of groupInstances) {
    if (!list.some((i) => instances[i]!.kind === 'param' || instances[i]!.kind === 'state')) continue;
    const id = groups.length;
    groupIdOfRoot.set(root, id);
    let size = 0;
    const groupMembers: ChannelMember[] = [];
    const spaceMembers: ChannelSpaceMember[] = [];
    const blockers = new Set<string>();
    const fixed = new Set<number>();
    const nodes = new Set<string>();
    let exact = true;
    for (const i of list) {
      const inst = instances[i]!;
      const channelOf = new Int32Array(inst.size);
      for (let j = 0; j < inst.size; j++) {
        const positionRoot = positionSets.find(inst.base + j);
        let channel = channelIdOfRoot.get(positionRoot);
        if (channel === undefined) {
          channel = size++;
          channelIdOfRoot.set(positionRoot, channel);
        }
        channelOf[j] = channel;
      }
      if (mixing.has(i)) exact = false;
      for (const node of nodeOfInstance.get(i) ?? []) nodes.add(node);
      if (inst.kind === 'space') {
        spaceMembers.push({ node: inst.space!.node, space: inst.space!.name, channelOf });
        continue;
      }
      const member: ChannelMember = { kind: inst.kind, name: inst.name, axis: inst.axis, channelOf };
      if (inst.kind !== 'value') member.owners = owners.get(inst.name) ?? [];
      groupMembers.push(member);
      if (inst.kind === 'value') {
        const by = mapped.get(`${inst.name}:${inst.axis}`) ?? new Set<string>();
        for (const place of touches.get(inst.name) ?? []) {
          if (by.has(place)) continue;
          for (const channel of channelOf) fixed.add(channel);
          if (place === 'graph input' || place === 'graph output') {
            blockers.add(`${place} '${inst.name}' (axis ${inst.axis}) cannot change`);
          } else {
            const barrier = barriers.find((b) => b.node === place);
            blockers.add(
              barrier
                ? `node '${place}' (${barrier.op}) declares no channels`
                : `node '${place}' does not map axis ${inst.axis} of '${inst.name}'`,
            );
          }
        }
      }
    }
    const byKind = (kind: ChannelMember['kind']) => groupMembers.filter((m) => m.kind === kind);
    groups.push({
      id,
      size,
      params: byKind('param'),
      state: byKind('state'),
      values: byKind('value'),
      nodes: [...nodes],
      spaces: spaceMembers,
      blockers: [...blockers],
      fixed: [...fixed].sort((a, b) => a - b),
      exact,
    });
    members.set(id, groupMembers);
    groupSpaces.set(id, spaceMembers);
  }
  return { groups, barriers, compiled, members, spaces: groupSpaces };
}

/**
 * The groups of coupled channels of a graph (DepGraph's dependency groups), from the channel
 * declarations of its ops: each group lists the parameter, state and value axes that hold its
 * channels, which channel each position holds, and what blocks changing it (an op without a
 * declaration, a graph input or output). Groups of a sub-graph's own channels are included.
 *
 * @example
 * ```ts
 * const { groups, barriers } = channelGroups(runtime, model.graph);
 * const prunable = groups.filter((g) => g.fixed.length < g.size);
 * ```
 */
export function channelGroups(runtime: Runtime, graph: Graph): ChannelAnalysis {
  const { groups, barriers } = analyzeChannels(runtime, graph);
  return { groups, barriers };
}

/**
 * @internal The group `id` of an analysis, for pass `pass`: throws an `INVALID_OPTION` naming
 * the pass when there is no such group, or when something blocks changing its channels.
 */
export function changeableGroup(analysis: ChannelAnalysis, id: unknown, pass: string): ChannelGroup {
  const group = typeof id === 'number' ? analysis.groups[id] : undefined;
  if (group === undefined) {
    throw new DynnError(
      'INVALID_OPTION',
      `${pass}: 'group' is ${JSON.stringify(id)}; the graph has channel groups 0 to ${analysis.groups.length - 1} (see channelGroups).`,
    );
  }
  if (group.fixed.length === group.size) {
    throw new DynnError(
      'INVALID_OPTION',
      `${pass}: channel group ${group.id} cannot change: ${group.blockers.join('; ')}.`,
      group.nodes[0] === undefined ? {} : { node: group.nodes[0] },
    );
  }
  return group;
}

/**
 * @internal Checks a list of channels of `group` for pass `pass` (integers in range, each once,
 * none fixed) and returns them as a set.
 */
export function channelSet(group: ChannelGroup, channels: unknown, pass: string): Set<number> {
  const list = Array.isArray(channels) ? channels : undefined;
  const set = new Set<number>();
  for (const c of list ?? [undefined]) {
    if (!Number.isInteger(c) || (c as number) < 0 || (c as number) >= group.size || set.has(c as number)) {
      throw new DynnError(
        'INVALID_OPTION',
        `${pass}: 'channels' must list distinct integers from 0 to ${group.size - 1} (group ${group.id} has ${group.size}); got ${JSON.stringify(channels)}.`,
      );
    }
    set.add(c as number);
  }
  const fixed = group.fixed.filter((c) => set.has(c));
  if (fixed.length > 0) {
    throw new DynnError(
      'INVALID_OPTION',
      `${pass}: channels ${fixed.join(', ')} of group ${group.id} cannot change (${group.blockers.join('; ')}); ` +
        `choose among the others.`,
      group.nodes[0] === undefined ? {} : { node: group.nodes[0] },
    );
  }
  return set;
}
