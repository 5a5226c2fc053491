// Build: `npx vite build web` -> web/dist (served by the server at /).
// Dev:   `npx vite web` serves the app with a fixture API (web/dev/fixture-api.ts);
//        `FLEETPROF_API=http://127.0.0.1:4040 npx vite web` proxies /api to a real server.
import { defineConfig } from 'vite';
import { fixtureApi } from './dev/fixture-api.js';

const target = process.env.FLEETPROF_API;

export default defineConfig({
  base: './',
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', sourcemap: true },
  server: {
    host: '127.0.0.1',
    proxy: target ? { '/api': { target, changeOrigin: true } } : undefined,
  },
  plugins: target ? [] : [fixtureApi()],
});
