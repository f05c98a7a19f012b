/**
 * The stdin protocol between a benchmark and its child entries: one command per line, answered on stdout.
 *
 *   metrics <file>   writes the process's prom-client metrics (JSON) to <file>, answers `METRICS`
 *   <name> <file>    any extra command an entry registers, answered as it says
 */
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { registry } from '../../operator/shared/metrics.ts';

/** Starts answering commands on stdin; `extra` maps a command name to a handler that gets the file argument. */
export function answerCommands(extra: Record<string, (file: string) => void | Promise<void>> = {}): void {
  const commands: Record<string, (file: string) => void | Promise<void>> = {
    metrics: async (file) => {
      writeFileSync(file, JSON.stringify(await registry.getMetricsAsJSON()));
      console.log('METRICS');
    },
    ...extra,
  };
  createInterface({ input: process.stdin }).on('line', (line) => {
    const [cmd, file] = line.trim().split(/\s+/);
    const handler = cmd ? commands[cmd] : undefined;
    if (handler && file)
      void Promise.resolve(handler(file)).catch((err: unknown) => console.error(String(err)));
  });
}
