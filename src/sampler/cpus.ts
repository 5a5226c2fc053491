import { readFileSync } from 'node:fs';

/** Parses a kernel CPU list such as "0-3,8,10-11". */
export function parseCpuList(text: string): number[] {
  const cpus: number[] = [];
  for (const part of text.trim().split(',')) {
    if (part === '') continue;
    const [first, last] = part.split('-');
    const start = Number(first);
    const end = last === undefined ? start : Number(last);
    if (!Number.isInteger(start) || !Number.isInteger(end) || end < start) throw new Error(`bad CPU list: ${text}`);
    for (let cpu = start; cpu <= end; cpu++) cpus.push(cpu);
  }
  return cpus;
}

export function onlineCpus(): number[] {
  return parseCpuList(readFileSync('/sys/devices/system/cpu/online', 'utf8'));
}
