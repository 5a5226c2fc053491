// The container image, built and run the way the DaemonSet runs it: the
// test builds the image from this checkout with deploy/build-image.sh
// (buildah with vfs storage and chroot isolation, on a debootstrap Debian
// base: no Docker engine is needed), then deploy/test-image.sh runs
// `fleetprof --version` and `fleetprof record --duration 1` inside its root
// file system, read-only, with only the DaemonSet's capabilities, and checks
// that dropping CAP_BPF makes record fail and dropping CAP_SYSLOG is warned
// about. Here the test also checks that the image ships only what runs: no
// compiler, no TypeScript sources, no dev dependencies.
//
// Slow (a cold build downloads a Debian base and the build's packages; see
// deploy/build-image.sh for timings), so it has its own long timeout. It needs
// root, buildah and debootstrap: scripts/setup.sh installs both packages.
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../src/util/package-root.js';

const ROOT = packageRoot();
const TAG = 'localhost/fleetprof:test';
const BUILDAH = ['--storage-driver', 'vfs'];
const LOG_DIR = join(ROOT, 'test-artifacts');
const IMAGE_TIMEOUT_MS = 60 * 60_000;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command, keeping its output and teeing it into a log file (the build is long; its log is the first thing to read when it fails). */
function run(command: string, args: string[], logName: string): Promise<Run> {
  mkdirSync(LOG_DIR, { recursive: true });
  const log = createWriteStream(join(LOG_DIR, logName));
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      log.write(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      // Keep the tail only: a cold build prints megabytes of apt and npm output.
      stderr = (stderr + chunk.toString()).slice(-200_000);
      log.write(chunk);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      log.end();
      resolve({ code, stdout, stderr });
    });
  });
}

async function buildah(args: string[], logName: string): Promise<string> {
  const result = await run('buildah', [...BUILDAH, ...args], logName);
  if (result.code !== 0) throw new Error(`buildah ${args.join(' ')} failed: ${result.stderr.slice(-2000)}`);
  return result.stdout.trim();
}

describe('container image', () => {
  afterAll(async () => {
    // The test image and the layers only it used; the base image and the
    // cached package layers stay so that the next build is faster. With vfs
    // storage every layer is a full copy of its root file system, so removing
    // the image and the build stage's dangling layers deletes several hundred
    // megabytes file by file: 31 s + 44 s on this machine when quiet
    // (2026-12-02), over the 120 s hook timeout this had in a CI run, hence
    // the image's own timeout here.
    await run('buildah', [...BUILDAH, 'rmi', '--force', TAG], 'image-cleanup.log');
    await run('buildah', [...BUILDAH, 'rmi', '--prune'], 'image-cleanup.log');
  }, IMAGE_TIMEOUT_MS);

  it('builds with deploy/build-image.sh, and runs version and record inside with only the DaemonSet capabilities', async () => {
    const build = await run('bash', [join(ROOT, 'deploy', 'build-image.sh'), TAG], 'image-build.log');
    expect(build.code, `build-image.sh failed (log: test-artifacts/image-build.log):\n${build.stderr.slice(-4000)}`).toBe(0);
    expect(build.stdout.trim()).toBe(TAG);

    const check = await run('bash', [join(ROOT, 'deploy', 'test-image.sh'), TAG], 'image-test.log');
    expect(check.code, `test-image.sh failed (log: test-artifacts/image-test.log):\n${check.stderr.slice(-4000)}`).toBe(0);
    expect(check.stderr).toMatch(/test-image: fleetprof --version: \d+\.\d+\.\d+/);
    const samples = /test-image: record --duration 1: (\d+) samples/.exec(check.stderr);
    expect(samples, 'record inside the image reported no sample count').not.toBeNull();
    expect(Number(samples![1])).toBeGreaterThan(0);
    expect(check.stderr).toMatch(/test-image: record --duration 1 --unwind dwarf: [1-9]\d* samples/);
    expect(check.stderr).toMatch(/test-image: without CAP_BPF: /);
    expect(check.stderr).toMatch(/test-image: ok/);

    // What the image ships: the runtime, not the build.
    const ctr = await buildah(['from', '--pull-never', '--quiet', TAG], 'image-inspect.log');
    try {
      const rootfs = await buildah(['mount', ctr], 'image-inspect.log');
      const app = join(rootfs, 'opt', 'fleetprof');
      expect(existsSync(join(app, 'dist', 'src', 'cli.js'))).toBe(true);
      expect(existsSync(join(app, 'bpf', 'build', 'profile.bpf.o'))).toBe(true);
      expect(existsSync(join(app, 'bpf', 'build', 'profile-unwind.bpf.o')), 'the unwinder BPF object (--unwind dwarf) is missing').toBe(true);
      expect(existsSync(join(app, 'native', 'build', 'Release', 'fleetprof_native.node'))).toBe(true);
      expect(existsSync(join(app, 'web', 'dist', 'index.html'))).toBe(true);
      expect(existsSync(join(rootfs, 'usr', 'bin', 'clang')), 'the compiler is in the runtime image').toBe(false);
      expect(existsSync(join(rootfs, 'usr', 'bin', 'npm')), 'npm is in the runtime image').toBe(false);
      expect(existsSync(join(app, 'src')), 'TypeScript sources are in the runtime image').toBe(false);
      const modules = readdirSync(join(app, 'node_modules'));
      for (const dev of ['vitest', 'typescript', 'vite', 'eslint', 'fast-check']) {
        expect(modules, `dev dependency ${dev} is in the runtime image`).not.toContain(dev);
      }
      expect(modules).toContain('fastify');
    } finally {
      await run('buildah', [...BUILDAH, 'umount', ctr], 'image-inspect.log');
      await run('buildah', [...BUILDAH, 'rm', ctr], 'image-inspect.log');
    }
  }, IMAGE_TIMEOUT_MS);
});
