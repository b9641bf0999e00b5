// Writes docs/config.md and the JSON Schemas under configs/schema/ from the config schema
// (shared/config/). `npm run docs:config`; test/config-docs.test.ts fails when they are stale.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generatedConfigFiles } from '../shared/config/schema/render.js';

const root = join(import.meta.dirname, '..');
for (const [path, text] of Object.entries(generatedConfigFiles())) {
  writeFileSync(join(root, path), text);
  process.stdout.write(`wrote ${path}\n`);
}
