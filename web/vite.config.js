import { defineConfig } from 'vite';
import vue from '@vitejs/plugin-vue';

// The build goes to web/dist: index.html (served by Flask at / with no-cache) and hashed files
// under assets/ (served with a one-year immutable cache). No inline script or style is emitted,
// so the page runs under `default-src 'self'`.
export default defineConfig({
  plugins: [vue()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsInlineLimit: 0, // every asset a file of its own: no data: URLs needed
    sourcemap: false,
  },
  server: {
    // `npm run dev`: the API of a `flask run` on port 5000
    proxy: { '/api': 'http://127.0.0.1:5000' },
  },
});
