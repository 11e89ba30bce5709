// The runner bundle (dist/runner.cjs): predict, validate, calibrate. Each command lives in
// src/cli/commands/<name>.ts and exports run(argv).
import { main, UsageError } from './args';

const COMMANDS: Record<string, () => Promise<{ run: (argv: string[]) => Promise<void> }>> = {
  predict: async () => import('./commands/predict'),
  validate: async () => import('./commands/validate'),
  calibrate: async () => import('./commands/calibrate'),
};

const USAGE = `usage: node runner.cjs <command> [options]   (commands: ${Object.keys(COMMANDS).join(', ')}; --help for each)`;

main(async () => {
  const [cmd, ...rest] = process.argv.slice(2);
  if (!cmd || cmd === '--help' || cmd === '-h') {
    process.stdout.write(USAGE + '\n');
    return;
  }
  const load = COMMANDS[cmd];
  if (!load) throw new UsageError(`Unknown command: ${cmd}\n${USAGE}`);
  await (await load()).run(rest);
});
