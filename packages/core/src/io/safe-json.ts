import type { LoadLimits } from './limits.js';
import { DAMAGED_FIX, limitError, modelFileError } from './model-file-error.js';

/** Keys that could reach an object's prototype if some code merged parsed data into an object. */
const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Throws when brackets in `text` nest deeper than `maxDepth`. A linear scan without recursion, so
 * a hostile `[[[[...` a million deep costs one pass and never a stack overflow.
 */
function checkNestingDepth(text: string, file: string, maxDepth: number): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_BRACKET || c === OPEN_BRACE) {
      depth++;
      if (depth > maxDepth) {
        throw limitError(
          file,
          `Nesting deeper than ${maxDepth} levels (at character ${i})`,
          'maxDepth',
          maxDepth,
        );
      }
    } else if (c === CLOSE_BRACKET || c === CLOSE_BRACE) {
      depth--;
    }
  }
}

/**
 * Parses the text of a model.json safely: checks its nesting depth before `JSON.parse` sees it,
 * then checks the parsed tree with {@link checkJsonTree}. Throws a `MODEL_FILE` error naming
 * `file` on text that is not JSON or breaks a limit.
 */
export function parseJsonText(text: string, file: string, limits: LoadLimits): unknown {
  checkNestingDepth(text, file, limits.maxDepth);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw modelFileError(
      file,
      `is not valid JSON (${(error as Error).message}).`,
      'Check that the location holds a model.json file (and not, say, an HTML error page).',
    );
  }
  checkJsonTree(value, file, limits, 'model.json');
  return value;
}

interface Container {
  value: object;
  depth: number;
  parent: Container | undefined;
  key: string | number;
}

/** The path of a container, built only when an error needs it. */
function pathOf(node: Container | undefined, key?: string | number): string {
  const keys: (string | number)[] = key === undefined ? [] : [key];
  for (let at = node; at !== undefined; at = at.parent) keys.push(at.key);
  keys.reverse();
  return keys.map((k, i) => (i === 0 ? String(k) : typeof k === 'number' ? `[${k}]` : `.${k}`)).join('');
}

function describe(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (typeof value === 'number') return String(value);
  if (typeof value === 'object' && value !== null) return value.constructor?.name ?? 'an object';
  return typeof value;
}

/**
 * Checks that `value` is plain JSON data: null, booleans, finite numbers, strings, arrays and
 * plain objects only; no key `__proto__`, `constructor` or `prototype`; no container nested deeper
 * than `limits.maxDepth` or longer than `limits.maxListLength`; no object reached twice (JSON
 * has no shared or cyclic references, and sharing could make the walk exponential). Iterative,
 * so deep input cannot overflow the stack. `root` names the value in error messages, which end
 * with `fix`.
 */
export function checkJsonTree(
  value: unknown,
  file: string,
  limits: LoadLimits,
  root: string,
  fix: string = DAMAGED_FIX,
): void {
  const seen = new Set<object>();
  const stack: Container[] = [];
  // Checks a primitive in place; queues a container. `parent` undefined means `value` is the root.
  const visit = (item: unknown, parent: Container | undefined, key: string | number): void => {
    if (item === null || typeof item === 'string' || typeof item === 'boolean') return;
    const path = () => (parent === undefined ? root : pathOf(parent, key));
    if (typeof item === 'number') {
      if (!Number.isFinite(item)) {
        throw modelFileError(file, `${path()} is ${item}, which JSON cannot hold.`, fix);
      }
      return;
    }
    if (typeof item !== 'object') {
      throw modelFileError(file, `${path()} is ${describe(item)}, which is not JSON data.`, fix);
    }
    const depth = parent === undefined ? 1 : parent.depth + 1;
    if (depth > limits.maxDepth) {
      throw limitError(
        file,
        `Nesting deeper than ${limits.maxDepth} levels (at ${path()})`,
        'maxDepth',
        limits.maxDepth,
      );
    }
    if (seen.has(item)) {
      throw modelFileError(file, `${path()} refers to an object seen before; JSON data is a tree.`, fix);
    }
    seen.add(item);
    stack.push({ value: item, depth, parent, key: parent === undefined ? root : key });
  };
  visit(value, undefined, root);
  while (stack.length > 0) {
    const node = stack.pop()!;
    const item = node.value;
    const proto = Object.getPrototypeOf(item);
    if (Array.isArray(item)) {
      if (proto !== Array.prototype) throw modelFileError(file, `${pathOf(node)} is not a plain array.`, fix);
      if (item.length > limits.maxListLength) {
        throw limitError(
          file,
          `${pathOf(node)} has ${item.length} entries, which`,
          'maxListLength',
          limits.maxListLength,
        );
      }
      for (let i = 0; i < item.length; i++) {
        const child: unknown = item[i];
        if (child === undefined) {
          throw modelFileError(file, `${pathOf(node, i)} is undefined, which is not JSON data.`, fix);
        }
        visit(child, node, i);
      }
      continue;
    }
    if (proto !== Object.prototype && proto !== null) {
      throw modelFileError(file, `${pathOf(node)} is ${describe(item)}, which is not JSON data.`, fix);
    }
    const keys = Object.keys(item);
    if (keys.length > limits.maxListLength) {
      throw limitError(
        file,
        `${pathOf(node)} has ${keys.length} keys, which`,
        'maxListLength',
        limits.maxListLength,
      );
    }
    for (const key of keys) {
      if (FORBIDDEN_KEYS.has(key)) {
        throw modelFileError(
          file,
          `${pathOf(node)} has the key '${key}', which model files may not use.`,
          fix,
        );
      }
      const child: unknown = (item as Record<string, unknown>)[key];
      // JSON.stringify drops undefined properties, so they are absent rather than wrong.
      if (child !== undefined) visit(child, node, key);
    }
  }
}
