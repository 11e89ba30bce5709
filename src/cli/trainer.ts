// The trainer bundle (dist/trainer.cjs): produces weights directories the runner loads.
// tiny: seeded random tiny Gemma-2 (CI, demo); import: HF checkpoint + PEFT adapter -> merged,
// quantized ONNX; features: the gradient-boosted feature baseline.
import { main, UsageError } from './args';

const COMMANDS: Record<string, () => Promise<{ run: (argv: string[]) => Promise<void> }>> = {
  tiny: async () => import('./commands/tiny'),
  import: async () => import('./commands/import'),
  features: async () => import('./commands/features'),
};

const USAGE = `usage: node trainer.cjs <command> [options]   (commands: ${Object.keys(COMMANDS).join(', ')}; --help for each)`;

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
