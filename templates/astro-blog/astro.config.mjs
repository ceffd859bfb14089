// The static site built from a genarun run's site-data.json (public/data/).
import { defineConfig } from 'astro/config';

// Telemetry off for every build of this site, however it is started (Astro reads the variable
// when it records, after loading this file).
process.env.ASTRO_TELEMETRY_DISABLED = '1';

export default defineConfig({
  output: 'static',
  // Page links end in '/', so the built folder works on any static host.
  trailingSlash: 'always',
  build: { format: 'directory' },
});
