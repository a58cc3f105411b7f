import { cpus, totalmem } from 'node:os';
import { isDynnError } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';

/** The machine a bench ran on. */
export interface BenchMachine {
  /** CPU model, as the OS names it. */
  cpu: string;
  /** Logical cores. */
  cores: number;
  /** Memory in GiB. */
  memoryGiB: number;
  /** `process.platform`/`process.arch`. */
  platform: string;
  /** Node.js version. */
  node: string;
  /** `@tensorflow/tfjs-core` version. */
  tfjs: string;
}

/**
 * What every `dynn bench ... --json` prints and every bench's `result.json` holds: who ran what,
 * where and when, the bench's own fields, then `error` (null when it finished).
 */
export interface BenchEnvelope {
  /** `early-exit`, or `early-exit/text` for a variant. */
  bench: string;
  /** The tfjs backend measured on. */
  backend: string;
  /** ISO date and time the run finished. */
  date: string;
  machine: BenchMachine;
  /** True for a `--quick` smoke run: not a measurement to quote. */
  quick: boolean;
  /** The bench's own fields. */
  [field: string]: unknown;
  /** Why the bench failed, or null. */
  error: { message: string; code: string | null } | null;
}

/** Who ran what, where and when: the envelope without the bench's fields. */
export type BenchHead = Pick<BenchEnvelope, 'bench' | 'backend' | 'date' | 'machine' | 'quick'>;

/** The machine this process runs on. */
export function benchMachine(): BenchMachine {
  const list = cpus();
  return {
    cpu: list[0]?.model.trim() ?? 'unknown CPU',
    cores: list.length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    platform: `${process.platform}/${process.arch}`,
    node: process.version,
    tfjs: tf.version_core,
  };
}

/** One line naming the machine, for markdown reports. */
export function formatMachine(machine: BenchMachine): string {
  return `${machine.cores} x ${machine.cpu}, Node ${machine.node}, tfjs ${machine.tfjs}`;
}

/** The head of a bench run that is finishing now, on the active backend. */
export function benchHead(bench: string, quick: boolean): BenchHead {
  const backend = tf.engine().backendName ?? 'none';
  return { bench, backend, date: new Date().toISOString(), machine: benchMachine(), quick };
}

/** "Measured <day> on <machine>, backend `<name>`", the first words of every bench's markdown. */
export function measuredOn(head: BenchHead): string {
  const smoke = head.quick ? ' (a `--quick` smoke run: not a measurement to quote)' : '';
  return `Measured ${head.date.slice(0, 10)} on ${formatMachine(head.machine)}, backend \`${head.backend}\`${smoke}`;
}

/** Wraps a bench's fields (or its failure) in the envelope every bench prints. */
export function benchEnvelope(
  bench: string,
  quick: boolean,
  outcome: { fields: Record<string, unknown> } | { error: unknown },
): BenchEnvelope {
  const head = benchHead(bench, quick);
  if ('error' in outcome) {
    const e = outcome.error;
    return {
      ...head,
      error: {
        message: e instanceof Error ? e.message : String(e),
        code: isDynnError(e) ? e.code : null,
      },
    };
  }
  // The head comes first in key order and wins over a field of the same name.
  return { ...head, ...outcome.fields, ...head, error: null };
}
