// The static site built from a genarun run's site-data.json (public/data/).
import { defineConfig } from 'astro/config';

export default defineConfig({
  output: 'static',
  // Page links end in '/', so the built folder works on any static host.
  trailingSlash: 'always',
  build: { format: 'directory' },
});
