import test from 'ava';
import {
  brownToText,
  CORPUS_NAMES,
  type Document,
  isCorpusName,
  loadCorpus,
  splitDocuments,
} from '../shared/data/corpora.js';

const MIN_DOCS = { sotu: 200, 'moby-dick': 135, brown: 500 } as const;

for (const name of CORPUS_NAMES) {
  test(`${name} loads: non-empty documents with unique ids`, (t) => {
    const docs = loadCorpus(name);
    t.true(docs.length >= MIN_DOCS[name], `${docs.length} documents`);
    const ids = new Set(docs.map((d) => d.id));
    t.is(ids.size, docs.length);
    for (const d of docs) {
      t.true(d.id.startsWith(`${name}/`));
      if (d.text.trim().length < 100) t.fail(`${d.id} is nearly empty`);
    }
    // cached: the same documents on a second call, and the caller's array is its own
    const again = loadCorpus(name);
    t.is(again[0], docs[0]);
    docs.length = 0;
    t.is(loadCorpus(name).length, again.length);
  });
}

test('moby-dick is split by chapter', (t) => {
  const docs = loadCorpus('moby-dick');
  const ch1 = docs.find((d) => d.id === 'moby-dick/chapter_1');
  t.truthy(ch1);
  t.true(ch1!.text.includes('Call me Ishmael.'));
  const longest = Math.max(...docs.map((d) => d.text.length));
  t.true(longest < 100_000, `longest chapter has ${longest} chars`);
  t.false(docs.some((d) => d.text.startsWith('CONTENTS')));
});

test('sotu documents are the addresses', (t) => {
  const docs = loadCorpus('sotu');
  t.is(docs[0].id, 'sotu/1790_george_washington_n');
  t.true(docs[0].text.startsWith('Fellow-Citizens of the Senate and House of Representatives'));
});

test('brown has its tags stripped and readable spacing', (t) => {
  const docs = loadCorpus('brown');
  t.true(docs[0].text.startsWith('The Fulton County Grand Jury said Friday an investigation of'));
  t.true(docs[0].text.includes('produced "no evidence" that any irregularities took place.'));
  const tagRemnant =
    /[A-Za-z,.]\/(?:at|nn|nns|np|in|jj|vbd|vbn|cc|rb|cs|to|md|ppss|pps|dt|cd)(?:-tl|-hl|-nc|\$)?(?=\s|$)/;
  for (const d of docs) {
    if (tagRemnant.test(d.text)) t.fail(`${d.id}: tag remnant near ${d.text.match(tagRemnant)![0]}`);
    if (d.text.includes('``') || d.text.includes("''")) t.fail(`${d.id}: raw Brown quote marks`);
    // (a space before ":" or "." is fine before a digit, as in race times like ":35.3")
    const m = d.text.match(/.{0,20} (?:[,;?!)]|[.:](?!\d)).{0,5}/);
    if (m) t.fail(`${d.id}: space before punctuation: ${JSON.stringify(m[0])}`);
  }
});

test('brownToText joins tagged tokens', (t) => {
  const raw =
    "\n\n\tThe/at Fulton/np-tl County/nn-tl said/vbd ``/`` no/at evidence/nn ''/'' ,/, (/( really/rb )/) ./.\n\n" +
    "\tHe/pps paid/vbd 1-1/2/cd %/nn for/in 1/8''/nn ''/'' brass/nn with/in Mr./np Smith/np Jr./np ./.\n\n" +
    '\tMerger/nn-hl proposed/vbn-hl\n\n\tNext/ap sentence/nn ?/.\n';
  t.is(
    brownToText(raw),
    'The Fulton County said "no evidence", (really). He paid 1-1/2% for 1/8" brass with Mr. Smith Jr.\n\n' +
      'Merger proposed\n\nNext sentence?',
  );
});

test('isCorpusName', (t) => {
  t.true(isCorpusName('brown'));
  t.false(isCorpusName('wikipedia'));
});

const fakeDocs = (n: number): Document[] =>
  Array.from({ length: n }, (_, i) => ({ id: `d${i}`, text: `t${i}` }));

test('splitDocuments is deterministic, disjoint and complete', (t) => {
  const docs = loadCorpus('sotu');
  const a = splitDocuments(docs, 0.1, 42);
  const b = splitDocuments(docs, 0.1, 42);
  t.deepEqual(
    a.heldOut.map((d) => d.id),
    b.heldOut.map((d) => d.id),
  );
  t.is(a.heldOut.length, Math.round(docs.length * 0.1));
  t.is(a.train.length + a.heldOut.length, docs.length);
  const heldIds = new Set(a.heldOut.map((d) => d.id));
  t.false(a.train.some((d) => heldIds.has(d.id)));
  t.deepEqual([...a.train, ...a.heldOut].map((d) => d.id).sort(), docs.map((d) => d.id).sort());

  const c = splitDocuments(docs, 0.1, 43);
  t.notDeepEqual(
    c.heldOut.map((d) => d.id),
    a.heldOut.map((d) => d.id),
  );
  // independent of input order
  const reversed = splitDocuments([...docs].reverse(), 0.1, 42);
  t.deepEqual(reversed.heldOut.map((d) => d.id).sort(), [...heldIds].sort());
});

test('splitDocuments edge cases', (t) => {
  t.is(splitDocuments(fakeDocs(10), 0, 1).heldOut.length, 0);
  t.is(splitDocuments(fakeDocs(10), 1, 1).train.length, 0);
  const tiny = splitDocuments(fakeDocs(3), 0.01, 1);
  t.is(tiny.heldOut.length, 1);
  t.is(tiny.train.length, 2);
  const big = splitDocuments(fakeDocs(3), 0.99, 1);
  t.is(big.train.length, 1);
  t.throws(() => splitDocuments(fakeDocs(3), 1.5, 1), { message: /heldOutFraction/ });
  t.throws(() => splitDocuments(fakeDocs(3), Number.NaN, 1), { message: /heldOutFraction/ });
});
