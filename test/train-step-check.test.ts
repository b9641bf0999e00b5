import test from 'ava';
import { parseTrainConfig } from '../shared/config/train-config.js';
import type { KeyPosition } from '../shared/rl/key-positions.js';
import { checkTrainStep, maxStepKeyPositions } from '../shared/run/train-step-check.js';

const position = (id: number): KeyPosition => ({
  id,
  context: [1, 2, 3],
  target: 4,
  continuation: [4, 5],
  entropy: 0.5,
});

const cfgWith = (dynamic: boolean) =>
  parseTrainConfig(
    { method: 'rmt', train: { positions_per_step: 4 }, grpo: { dynamic_sampling: dynamic } },
    'test',
  );

test('with dynamic sampling a step brings up to twice positions_per_step key positions', (t) => {
  const dynamic = cfgWith(true);
  t.is(maxStepKeyPositions(dynamic), 8);
  // The 4 drawn positions plus 4 that replaced zero-variance groups: each keeps its NTP window.
  const eight = Array.from({ length: 8 }, (_, i) => position(i));
  t.notThrows(() => checkTrainStep([], eight, { cfg: dynamic, vocabSize: 16, maxPositions: 64 }));
  const nine = Array.from({ length: 9 }, (_, i) => position(i));
  t.throws(() => checkTrainStep([], nine, { cfg: dynamic, vocabSize: 16, maxPositions: 64 }), {
    message: /positions: 9 positions, at most 8/,
  });
});

test('without dynamic sampling a step brings at most positions_per_step key positions', (t) => {
  const plain = cfgWith(false);
  t.is(maxStepKeyPositions(plain), 4);
  const five = Array.from({ length: 5 }, (_, i) => position(i));
  t.throws(() => checkTrainStep([], five, { cfg: plain, vocabSize: 16, maxPositions: 64 }), {
    message: /positions: 5 positions, at most 4/,
  });
});
