#!/usr/bin/env node
import { Command, InvalidArgumentError } from 'commander';
import { record, type RecordProgress } from './agent/record.js';

function positiveNumber(name: string) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed <= 0) throw new InvalidArgumentError(`${name} must be a positive number`);
    return parsed;
  };
}

function positiveInteger(name: string) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed <= 0) throw new InvalidArgumentError(`${name} must be a positive integer`);
    return parsed;
  };
}

function progressLine(progress: RecordProgress): string {
  const seconds = (ms: number): string => (ms / 1000).toFixed(0);
  return `recording ${seconds(progress.elapsedMs)}s/${seconds(progress.durationMs)}s  samples ${progress.samples}  processes ${progress.processes}  dropped ${progress.dropped}`;
}

const program = new Command();
program.name('fleetprof').description('Always-on, fleet-wide eBPF CPU profiler');

program
  .command('record')
  .description('sample every process on this host (or one process tree) and write a pprof profile')
  .option('-d, --duration <seconds>', 'how long to record', positiveNumber('--duration'), 10)
  .option('-F, --frequency <hz>', 'samples per second per CPU', positiveInteger('--frequency'), 99)
  .option('-p, --pid <pid>', 'only this process and its descendants', positiveInteger('--pid'))
  .option('-o, --output <file>', 'where to write the gzipped pprof', 'fleetprof.pb.gz')
  .action(async (options: { duration: number; frequency: number; pid?: number; output: string }) => {
    const live = process.stderr.isTTY;
    const summary = await record({
      durationMs: options.duration * 1000,
      frequencyHz: options.frequency,
      pid: options.pid,
      outputPath: options.output,
      onProgress: (progress) => {
        if (live) process.stderr.write(`\r${progressLine(progress)}\u001b[K`);
      },
    });
    if (live) process.stderr.write('\r\u001b[K');
    const drops = summary.droppedTotal === 0 ? 'none' : Object.entries(summary.drops).map(([k, v]) => `${k} ${v}`).join(', ');
    const sym = summary.symbolizer;
    process.stderr.write(
      `wrote ${summary.outputPath}: ${summary.samples} samples from ${summary.processes} processes; ` +
        `kernel drops: ${drops}; unresolved frames: ${sym.unresolvedFrames}, vanished processes: ${sym.processesVanished}, unreadable binaries: ${sym.unreadableBinaries}\n`,
    );
  });

program.parseAsync(process.argv).catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`fleetprof: ${message}\n`);
  process.exitCode = 1;
});
