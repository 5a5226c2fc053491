// Runs the built CLI (dist/, built by scripts/setup.sh or `npm run build`)
// as a real child process: what a user starts, signals and all, and a
// server whose event loop can block without blocking the test's.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { packageRoot } from '../../src/util/package-root.js';

export const CLI_PATH = join(packageRoot(), 'dist', 'src', 'cli.js');

export interface CliProcess {
  child: ChildProcess;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Resolves with the exit code (or signal name) once the process ends. */
  exited: Promise<number | string>;
  /** SIGKILLs the process if it is still running. */
  kill(): void;
}

export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): CliProcess {
  if (!existsSync(CLI_PATH)) throw new Error(`${CLI_PATH} is missing: run \`npm run build\` (or scripts/setup.sh) first`);
  const child = spawn(process.execPath, [CLI_PATH, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let err = '';
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = once(child, 'exit').then(([code, signal]) => (code ?? signal) as number | string);
  return {
    child,
    stderr: () => err,
    exited,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

/** Waits until stderr matches `pattern` (or the process exits: then throws with its stderr). */
export async function waitForStderr(p: CliProcess, pattern: RegExp): Promise<RegExpExecArray> {
  for (;;) {
    const m = pattern.exec(p.stderr());
    if (m) return m;
    const ended = await Promise.race([p.exited.then(() => true), once(p.child.stderr!, 'data').then(() => false)]);
    if (ended) {
      const last = pattern.exec(p.stderr());
      if (last) return last;
      throw new Error(`process exited before printing ${pattern}: ${p.stderr()}`);
    }
  }
}

/** `fleetprof server` on 127.0.0.1 and a free port; resolves with its URL. */
export async function startCliServer(dataDir: string, extraArgs: string[] = []): Promise<CliProcess & { url: string }> {
  const p = runCli(['server', '--port', '0', '--data-dir', dataDir, ...extraArgs]);
  const m = await waitForStderr(p, /listening on (\S+)/);
  return { ...p, url: m[1]! };
}
