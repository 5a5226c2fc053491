// Opens the backend a store URL names (store.ts parseStoreUrl).
import { parseStoreUrl, type ProfileStore, type StoreOptions } from './store.js';
import { SqliteStore } from './sqlite-store.js';

export async function openStore(url: string, options: StoreOptions = {}): Promise<ProfileStore> {
  const parsed = parseStoreUrl(url);
  if (parsed.backend === 'sqlite') return SqliteStore.open(parsed.dir, options);
  // Loaded only when asked for: a SQLite server never loads pg.
  const { PgStore } = await import('./pg-store.js');
  return PgStore.open(parsed.url, options);
}
