// Commit linger (server/store/group-commit.ts): a commit that starts from
// idle waits for more ingests to share it; a full queue, a job, idle() and
// close() do not wait. Then the real server on both backends: ingests sent
// 50 ms apart share one lingering commit, ingests sent one after another are
// one commit each without a linger (counted in /metrics), and every
// acknowledged profile is stored.
import { afterAll, describe, expect, it } from 'vitest';
import { GroupCommitQueue, type PendingWrite } from '../server/store/group-commit.js';
import { BACKENDS, buildProfile, getJson, ingest, startTestServer } from './server-helpers.js';

const HOUR_MS = 3_600_000;
/** Long enough that a test passing through it would hit vitest's timeout instead. */
const FOREVER_MS = 600_000;

/** A queue whose commits record their group sizes and answer each batch with its own value. */
function recordingQueue(lingerMs: number, lingerMaxBatches?: number) {
  const groups: number[][] = [];
  const queue = new GroupCommitQueue<number, number>(
    async (group: PendingWrite<number, number>[]) => {
      groups.push(group.map((g) => g.batch));
      for (const g of group) g.resolve(g.batch);
    },
    { lingerMs, lingerMaxBatches },
  );
  return { queue, groups };
}

const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 2));

describe('group commit linger', () => {
  it('without a linger, a batch written after the previous commit is its own commit', async () => {
    const { queue, groups } = recordingQueue(0);
    for (const b of [1, 2, 3]) expect(await queue.write(b)).toBe(b);
    expect(groups).toEqual([[1], [2], [3]]);
  });

  it('batches written while a commit lingers share it; the queue filling up starts it', async () => {
    const { queue, groups } = recordingQueue(FOREVER_MS, 3);
    const answers: Promise<number>[] = [];
    for (const b of [1, 2, 3]) {
      answers.push(queue.write(b));
      await tick(); // each from its own turn of the event loop, as HTTP requests come
    }
    expect(await Promise.all(answers)).toEqual([1, 2, 3]);
    expect(groups).toEqual([[1, 2, 3]]);
  });

  it('idle() and close() do not wait for the linger', async () => {
    const { queue, groups } = recordingQueue(FOREVER_MS);
    const a = queue.write(1);
    await tick();
    await queue.idle();
    expect(await a).toBe(1);
    const b = queue.write(2);
    await tick();
    await queue.close();
    expect(await b).toBe(2);
    expect(groups).toEqual([[1], [2]]);
    await expect(queue.write(3)).rejects.toThrow(/closed/);
  });

  it('a job does not linger', async () => {
    const { queue } = recordingQueue(FOREVER_MS);
    let ran!: () => void;
    const done = new Promise<void>((resolve) => (ran = resolve));
    queue.addJob(async () => ran());
    queue.kick();
    await done;
    await queue.close();
  });
});

describe.each(BACKENDS)('commit linger on the server (%s)', (backend) => {
  const stops: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const stop of stops) await stop();
  });

  const commitCounters = async (url: string) => {
    const text = await (await fetch(`${url}/metrics`)).text();
    const counter = (name: string) => Number(new RegExp(`^${name}(?:_total)?(?:\\{[^}]*\\})? (\\d+)`, 'm').exec(text)?.[1]);
    return { commits: counter('fleetprof_store_commits'), ingests: counter('fleetprof_store_committed_ingests') };
  };

  const profiles = (n: number, t0: number) =>
    Array.from({ length: n }, (_, i) => buildProfile({ timeMs: t0 + i * 1000, samples: [{ stack: ['main', `work${i}`], values: [i + 1, (i + 1) * 10_000_000] }] }));

  it.each([
    { lingerMs: 0, staggered: false },
    { lingerMs: 3_000, staggered: true },
  ])('linger $lingerMs ms, ingests sent 50 ms apart without waiting: $staggered', async ({ lingerMs, staggered }) => {
    const server = await startTestServer({ backend, commitLingerMs: lingerMs });
    stops.push(() => server.stop());
    const t0 = Date.now() - HOUR_MS / 2;
    const bodies = profiles(7, t0);
    // The first ingest, answered before the others go, waits behind the jobs the
    // server queued at start (retention) and is counted before the six measured.
    expect((await ingest(server.url, bodies.pop()!, { node: 'first' })).status).toBe(200);
    const before = await commitCounters(server.url);
    const answers: Awaited<ReturnType<typeof ingest>>[] = [];
    if (staggered) {
      const sent: ReturnType<typeof ingest>[] = [];
      for (const [i, body] of bodies.entries()) {
        sent.push(ingest(server.url, body, { node: `n${i}` }));
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      answers.push(...(await Promise.all(sent)));
    } else for (const [i, body] of bodies.entries()) answers.push(await ingest(server.url, body, { node: `n${i}` }));
    for (const a of answers) expect(a.status).toBe(200);
    const after = await commitCounters(server.url);
    expect(after.ingests - before.ingests).toBe(6);
    const commits = after.commits - before.commits;
    // One after another, each ingest is answered before the next is sent: six commits.
    // Sent 50 ms apart, each would be committed before the next arrives; the
    // first commit's 3 s linger holds it until all six are there: one commit.
    expect(commits).toBe(staggered ? 1 : 6);
    const list = await getJson<{ profiles: { timeMs: number }[] }>(server.url, '/api/v1/profiles', { from: String(t0 - 1), to: 'now', limit: '100' });
    expect(list.body.profiles.map((p) => p.timeMs).sort()).toEqual(Array.from({ length: 7 }, (_, i) => t0 + i * 1000));
  });
});
