// The files of scripts/ci-image.sh's run through the containers: a random-weight tiny base
// checkpoint and a run config of a few steps on it (the tests' tiny run), under one data folder
// that every service container mounts at the same path.
//
//   node --import tsx scripts/ci-image-fixture.ts <data folder> <steps>
//
// Prints the path of the run config.
import { mkdirSync, writeFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { tinyBaseCheckpoint, tinyRunConfig } from '../bench/fixtures/tiny-run.js';

const [dir, stepsArg] = process.argv.slice(2);
if (!dir || !isAbsolute(dir)) throw new Error('data folder: an absolute path is required');
const steps = Number(stepsArg);
if (!Number.isInteger(steps) || steps < 1 || steps > 20) throw new Error('steps: an integer in [1, 20]');
mkdirSync(dir, { recursive: true });
const config = tinyRunConfig(tinyBaseCheckpoint(dir), join(dir, 'out'), 'rmt', steps);
const path = join(dir, 'run.json');
writeFileSync(path, JSON.stringify(config));
console.log(path);
