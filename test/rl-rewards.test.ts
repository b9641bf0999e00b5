import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { METHOD_TABLE, RMT_DEFAULTS } from '../shared/config/rmt-defaults.js';
import { writeGpt2Tokenizer } from '../shared/data/gpt2-bpe.js';
import { loadTokenizer, type Tokenizer } from '../shared/data/tokenizer.js';
import { BareFormat, bytesOfTokens } from '../shared/rl/prompt-format.js';
import { bytePrefixReward, matchReward, rolloutReward, totalReward } from '../shared/rl/rewards.js';

const dir = mkdtempSync(join(tmpdir(), 'rmt-rewards-'));
let tok: Tokenizer;

test.before(async () => {
  writeGpt2Tokenizer(dir, { merges: 2000 });
  tok = await loadTokenizer(dir);
});

test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const utf8 = (s: string) => new TextEncoder().encode(s);
const bytes = (...b: number[]) => Uint8Array.from(b);

test('the test tokenizer splits the continuations as the cases assume', (t) => {
  t.deepEqual(
    tok.encode(' the cat').map((id) => tok.decode([id])),
    [' the', ' c', 'at'],
  );
  // é (C3 A9) is two byte-level tokens in this vocabulary.
  t.deepEqual(
    tok.encode('café').map((id) => Array.from(tok.tokenBytes(id))),
    [[0x63], [0x61, 0x66], [0xc3], [0xa9]],
  );
});

test('byte-prefix: a prediction spanning whole tokens earns 1', (t) => {
  const gt = tok.encode(' the cat sat');
  t.is(bytePrefixReward(utf8(' the'), gt, tok), 1);
  t.is(bytePrefixReward(utf8(' the c'), gt, tok), 1); // two tokens
  t.is(bytePrefixReward(utf8(' the cat'), gt, tok), 1); // three tokens
  t.is(bytePrefixReward(utf8(' the cat sat'), gt, tok), 1); // the whole continuation
});

test('byte-prefix: a prediction stopping inside a token earns 0', (t) => {
  const gt = tok.encode(' the cat');
  t.is(bytePrefixReward(utf8(' th'), gt, tok), 0);
  t.is(bytePrefixReward(utf8(' the ca'), gt, tok), 0);
});

test('byte-prefix: wrong, empty, and longer-than-continuation predictions earn 0', (t) => {
  const gt = tok.encode(' the cat');
  t.is(bytePrefixReward(utf8(' a'), gt, tok), 0);
  t.is(bytePrefixReward(utf8(' thE'), gt, tok), 0);
  t.is(bytePrefixReward(utf8(''), gt, tok), 0);
  t.is(bytePrefixReward(utf8(' the cat!'), gt, tok), 0);
  t.is(bytePrefixReward(utf8(' the'), [], tok), 0);
});

test('byte-prefix: a non-ASCII character split across tokens', (t) => {
  const gt = tok.encode('café au lait'); // c | af | C3 | A9 | ...
  t.is(bytePrefixReward(utf8('café'), gt, tok), 1); // ends after A9: a token boundary
  // Eq. 3 is about token boundaries, not characters: C3 alone ends a token, so it counts.
  t.is(bytePrefixReward(bytes(0x63, 0x61, 0x66, 0xc3), gt, tok), 1);
  t.is(bytePrefixReward(utf8('caf'), gt, tok), 1);
  t.is(bytePrefixReward(utf8('cafe'), gt, tok), 0); // ASCII e is not é
  t.is(bytePrefixReward(utf8('ca'), gt, tok), 0); // inside 'af'
  // The same character as one token of a fake vocabulary: a cut inside it is not a boundary.
  const fake = { tokenBytes: (id: number) => [utf8('caf'), utf8('é'), utf8(' au')][id] };
  t.is(bytePrefixReward(utf8('café'), [0, 1, 2], fake), 1);
  t.is(bytePrefixReward(bytes(0x63, 0x61, 0x66, 0xc3), [0, 1, 2], fake), 0);
});

test('match reward: 1 only for exactly the single target token', (t) => {
  const [the, c] = tok.encode(' the c');
  t.is(matchReward([the], the), 1);
  t.is(matchReward([c], the), 0);
  t.is(matchReward([the, c], the), 0);
  t.is(matchReward([], the), 0);
  // The right text spelled with other tokens is not the token.
  const spelled = tok.encode(' th').concat(tok.encode('e'));
  t.is(tok.decode(spelled), ' the');
  t.is(matchReward(spelled, the), 0);
});

test('total reward: (1 - w) r_match + w r_len', (t) => {
  t.is(totalReward(1, 0.5, 0.2), 0.9);
  t.is(totalReward(0, 1, 0.2), 0.2);
  t.is(totalReward(1, 1, 0.2), 1);
  t.is(totalReward(1, 0, 0), 1);
  t.is(totalReward(0, 0, 0.2), 0);
});

test('rollout reward per method kind, and nothing for a rollout without an answer', (t) => {
  const bare = new BareFormat(tok, RMT_DEFAULTS.prompt);
  const cfg = RMT_DEFAULTS.reward; // w = 0.2, r_max = 1
  const cont = tok.encode(' the cat');
  const target = { targetId: cont[0], continuationIds: cont };
  const think = (n: number) => new Array<number>(n).fill(tok.encode(' so')[0]);
  const right = bare.parseResponse([...think(4), tok.endThinkId, cont[0], tok.eosId]);
  const twoTokens = bare.parseResponse([...think(2), tok.endThinkId, cont[0], cont[1], tok.eosId]);
  const noAnswer = bare.parseResponse([...think(4), tok.endThinkId, tok.eosId]);
  const cut = bare.parseResponse([...think(4), tok.endThinkId, cont[0]]);

  t.deepEqual(rolloutReward('match+length', right, target, 4, cfg, tok), { reward: 1, rMatch: 1, rLen: 1 });
  t.deepEqual(rolloutReward('match+length', right, target, 8, cfg, tok), {
    reward: 0.9,
    rMatch: 1,
    rLen: 0.5,
  });
  const wrongLen = rolloutReward('match+length', twoTokens, target, 4, cfg, tok);
  t.is(wrongLen.rMatch, 0);
  t.is(wrongLen.rLen, 0.5);
  t.true(Math.abs(wrongLen.reward - 0.1) < 1e-12);
  t.deepEqual(rolloutReward('match', right, target, 8, cfg, tok), { reward: 1, rMatch: 1, rLen: 0 });
  // RPT's byte-prefix reward accepts the two-token prediction; RMT's match does not.
  t.is(rolloutReward('byte-prefix', twoTokens, target, 4, cfg, tok).reward, 1);
  t.is(rolloutReward('match', twoTokens, target, 4, cfg, tok).reward, 0);
  for (const p of [noAnswer, cut]) {
    t.deepEqual(rolloutReward('match+length', p, target, 4, cfg, tok), { reward: 0, rMatch: 0, rLen: 0 });
    t.is(rolloutReward('byte-prefix', p, target, 4, cfg, tok).reward, 0);
  }
  const lenient = { ...cfg, length_reward_requires_answer: false };
  t.true(Math.abs(rolloutReward('match+length', noAnswer, target, 4, lenient, tok).reward - 0.2) < 1e-12);
  t.deepEqual(bytesOfTokens(twoTokens.predictionIds, tok), utf8(' the c'));
});

test('the reward column of the method table', (t) => {
  t.is(METHOD_TABLE.rpt.reward, 'byte-prefix');
  t.is(METHOD_TABLE.rmt.reward, 'match+length');
  t.is(METHOD_TABLE['rmt-no-dtb'].reward, 'match');
  t.is(METHOD_TABLE['rmt-no-cas'].reward, 'match+length');
  t.is(METHOD_TABLE['rmt-no-ntp'].reward, 'match+length');
  t.is(METHOD_TABLE.ntp.reward, 'none');
  t.is(METHOD_TABLE.ntr.reward, 'none');
});
