// The fuzzer (bench/fuzz.ts) drives the same tiny run as the tests; the fixture lives beside the
// benchmark so that no product or script imports from test/.
export { tinyBaseCheckpoint, tinyRunConfig } from '../../bench/fixtures/tiny-run.js';
