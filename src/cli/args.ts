// Small helpers over node:util parseArgs: typed options, clear errors for unknown flags and
// bad numbers, and `--help` text assembled from the option table.
import { parseArgs, type ParseArgsConfig } from 'node:util';

export class UsageError extends Error {
  override name = 'UsageError';
}

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export function parse(
  argv: string[],
  options: OptionSpec,
  usage: string,
): Record<string, string | boolean | string[] | undefined> {
  try {
    const { values } = parseArgs({
      args: argv,
      options: { ...options, help: { type: 'boolean' } },
      allowPositionals: false,
      strict: true,
    });
    if (values.help) {
      process.stdout.write(usage + '\n');
      process.exit(0);
    }
    return values as Record<string, string | boolean | string[] | undefined>;
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${usage}`);
  }
}

export function need(v: unknown, flag: string, usage: string): string {
  if (typeof v !== 'string' || v === '') throw new UsageError(`missing required option ${flag}\n\n${usage}`);
  return v;
}

export function num(v: unknown, flag: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UsageError(`${flag} must be a number, got "${v}"`);
  return n;
}

/** Runs a CLI main: known errors print their message (no stack) and exit 1. */
export function main(fn: () => Promise<void>): void {
  fn().then(
    () => {},
    (e: Error) => {
      const known = e && typeof e.name === 'string' && e.name !== 'Error' && e.name !== 'TypeError';
      process.stderr.write(`error: ${known ? e.message : (e?.stack ?? String(e))}\n`);
      process.exit(e?.name === 'UsageError' ? 2 : 1);
    },
  );
}

type CommandTable = Record<string, () => Promise<{ run: (argv: string[]) => Promise<void> }>>;

/** A bundle entry: `node <bundle> <command> [options]`, each command loaded lazily from its module. */
export function dispatch(bundle: string, commands: CommandTable): void {
  const usage = `usage: node ${bundle} <command> [options]   (commands: ${Object.keys(commands)
    .filter((c) => !c.startsWith('_'))
    .join(', ')}; --help for each)`;
  main(async () => {
    const [cmd, ...rest] = process.argv.slice(2);
    if (!cmd || cmd === '--help' || cmd === '-h') {
      process.stdout.write(usage + '\n');
      return;
    }
    const load = commands[cmd];
    if (!load) throw new UsageError(`Unknown command: ${cmd}\n${usage}`);
    await (await load()).run(rest);
  });
}
