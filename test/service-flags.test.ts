import { spawnSync } from 'node:child_process';
import test from 'ava';
import {
  defineFlags,
  envName,
  FlagError,
  type FlagSchema,
  HelpRequested,
  helpText,
  parseServiceFlags,
  type ServiceFlags,
  withoutEnv,
} from '../shared/config/service-flags.js';

const FLAGS = defineFlags({
  'rollout-workers': { type: 'int', default: 2, min: 1, doc: 'rollout worker processes' },
  'learning-rate': { type: 'number', default: 1e-4, doc: 'AdamW learning rate' },
  'run-id': { type: 'string', required: true, doc: 'run identifier' },
  'bus-url': { type: 'string', env: 'NATS_URL', doc: 'NATS server; in-process bus when unset' },
  backend: { type: 'enum', choices: ['webgpu', 'webasm', 'cpu'], default: 'cpu', doc: 'kernel backend' },
  mode: { type: 'enum', choices: ['embedded', 'cluster'], doc: 'how services are placed' },
  'dry-run': { type: 'bool', doc: 'validate the config and exit' },
  tls: { type: 'bool', default: true, doc: 'serve gRPC over TLS' },
});

// Compile-time check (tsc -p runs over test/): the result type is inferred from the const schema.
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const inferred: Equal<
  ServiceFlags<typeof FLAGS>,
  {
    rolloutWorkers: number;
    learningRate: number;
    runId: string;
    busUrl: string | undefined;
    backend: 'webgpu' | 'webasm' | 'cpu';
    mode: 'embedded' | 'cluster' | undefined;
    dryRun: boolean;
    tls: boolean;
  }
> = true;

const ENV = { RMT_RUN_ID: 'r1' };
const parse = (argv: string[], env: Record<string, string | undefined> = ENV) =>
  parseServiceFlags(FLAGS, argv, env);

/** Asserts a FlagError that names both the flag and its env var (and `also`). */
function flagError(
  t: import('ava').ExecutionContext,
  argv: string[],
  env: Record<string, string>,
  ...also: RegExp[]
) {
  const err = t.throws(() => parse(argv, env), { instanceOf: FlagError });
  if (!err) return;
  for (const re of also) t.regex(err.message, re);
  return err;
}

test('defaults, env, flag: flag > env > default', (t) => {
  t.true(inferred);
  t.deepEqual(parse([]), {
    rolloutWorkers: 2,
    learningRate: 1e-4,
    runId: 'r1',
    busUrl: undefined,
    backend: 'cpu',
    mode: undefined,
    dryRun: false,
    tls: true,
  });
  const env = {
    RMT_RUN_ID: 'from-env',
    RMT_ROLLOUT_WORKERS: '4',
    RMT_LEARNING_RATE: '3e-4',
    NATS_URL: 'nats://nats:4222',
    RMT_BACKEND: 'webgpu',
    RMT_DRY_RUN: 'Yes',
    RMT_TLS: 'off',
  };
  t.like(parse([], env), {
    runId: 'from-env',
    rolloutWorkers: 4,
    learningRate: 3e-4,
    busUrl: 'nats://nats:4222',
    backend: 'webgpu',
    dryRun: true,
    tls: false,
  });
  t.like(
    parse(
      [
        '--rollout-workers',
        '8',
        '--learning-rate=-0.5',
        '--run-id',
        'flag',
        '--backend=webasm',
        '--no-dry-run',
        '--tls',
      ],
      env,
    ),
    { rolloutWorkers: 8, learningRate: -0.5, runId: 'flag', backend: 'webasm', dryRun: false, tls: true },
  );
});

test('value forms: --x=v, --x v, bools, empty env is unset, the last repeat wins', (t) => {
  t.like(parse(['--bus-url=nats://a=b', '--mode', 'cluster']), { busUrl: 'nats://a=b', mode: 'cluster' });
  t.like(parse(['--dry-run=true', '--tls=0']), { dryRun: true, tls: false });
  t.like(parse(['--run-id=']), { runId: '' });
  t.like(parse([], { RMT_RUN_ID: 'r', RMT_ROLLOUT_WORKERS: '', RMT_BACKEND: '' }), {
    rolloutWorkers: 2,
    backend: 'cpu',
  });
  t.like(parse(['--rollout-workers', '3', '--rollout-workers=5']), { rolloutWorkers: 5 });
  t.like(parse(['--learning-rate', ' 2.5e-3 ']), { learningRate: 2.5e-3 });
  t.like(parse(['--rollout-workers', '+7']), { rolloutWorkers: 7 });
});

test('unknown flags are errors with a suggestion naming its env var', (t) => {
  const e1 = flagError(
    t,
    ['--rollout-worker', '3'],
    ENV,
    /unknown flag --rollout-worker\b/,
    /did you mean "--rollout-workers"\? env RMT_ROLLOUT_WORKERS\)/,
  );
  t.is(e1?.flag, '--rollout-worker');
  flagError(t, ['--zzz'], ENV, /unknown flag --zzz \(see --help\)/);
  flagError(t, ['--no-backend'], ENV, /unknown flag --no-backend/);
  flagError(t, ['--no-tls=1'], ENV, /--no-tls takes no value; use --tls=1 \(env RMT_TLS\)/);
  flagError(t, ['positional'], ENV, /unexpected argument "positional"/);
  flagError(t, ['-w', '3'], ENV, /unexpected argument "-w"/);
  flagError(t, ['--', 'x'], ENV, /unexpected argument "x"/);
  t.like(parse(['--']), { rolloutWorkers: 2 });
});

test('missing values name the flag, its env var and what was expected', (t) => {
  const e = flagError(
    t,
    ['--rollout-workers'],
    ENV,
    /^--rollout-workers \(env RMT_ROLLOUT_WORKERS\): missing value, expected an integer >= 1$/,
  );
  t.is(e?.flag, '--rollout-workers');
  t.is(e?.env, 'RMT_ROLLOUT_WORKERS');
  flagError(
    t,
    ['--bus-url', '--dry-run'],
    ENV,
    /^--bus-url \(env NATS_URL\): missing value, expected a string$/,
  );
  flagError(
    t,
    ['--backend'],
    ENV,
    /--backend \(env RMT_BACKEND\): missing value, expected one of webgpu, webasm, cpu/,
  );
});

test('bad ints, numbers, enums and bools from flags and from env', (t) => {
  for (const bad of ['abc', '1.5', '0x10', '1e3', '', '9007199254740993']) {
    flagError(
      t,
      [`--rollout-workers=${bad}`],
      ENV,
      /^--rollout-workers \(env RMT_ROLLOUT_WORKERS\): expected an integer >= 1, got /,
    );
  }
  flagError(t, ['--rollout-workers', '0'], ENV, /expected an integer >= 1, got "0"/);
  flagError(
    t,
    [],
    { ...ENV, RMT_ROLLOUT_WORKERS: 'four' },
    /^RMT_ROLLOUT_WORKERS \(flag --rollout-workers\): expected an integer >= 1, got "four"$/,
  );
  for (const bad of ['fast', 'Infinity', 'NaN', '0x1f', '1,5']) {
    flagError(
      t,
      ['--learning-rate', bad],
      ENV,
      /--learning-rate \(env RMT_LEARNING_RATE\): expected a number, got/,
    );
  }
  flagError(
    t,
    ['--backend=cuda'],
    ENV,
    /^--backend \(env RMT_BACKEND\): expected one of webgpu, webasm, cpu, got "cuda"$/,
  );
  flagError(
    t,
    [],
    { ...ENV, RMT_BACKEND: 'CPU' },
    /^RMT_BACKEND \(flag --backend\): expected one of webgpu, webasm, cpu, got "CPU" \(did you mean "cpu"\?\)$/,
  );
  flagError(t, ['--tls=maybe'], ENV, /^--tls \(env RMT_TLS\): expected a boolean/);
  flagError(
    t,
    [],
    { ...ENV, RMT_DRY_RUN: '2' },
    /^RMT_DRY_RUN \(flag --dry-run\): expected a boolean \(true\/false, 1\/0, yes\/no, on\/off\), got "2"$/,
  );
  // The flag wins, so a bad env value under a good flag is never read.
  t.like(parse(['--backend', 'cpu'], { ...ENV, RMT_BACKEND: 'cuda' }), { backend: 'cpu' });
});

test('a required option without flag, env or default is an error', (t) => {
  const e = flagError(t, [], {}, /^--run-id \(env RMT_RUN_ID\) is required: run identifier$/);
  t.is(e?.env, 'RMT_RUN_ID');
  flagError(t, [], { RMT_RUN_ID: '' }, /is required/);
});

test('--help and -h win over other errors', (t) => {
  t.throws(() => parse(['--help']), { instanceOf: HelpRequested });
  t.throws(() => parse(['--bogus', '-h'], {}), { instanceOf: HelpRequested });
  // After -- it is no longer a flag.
  t.throws(() => parse(['--', '--help']), { instanceOf: FlagError });
});

test('schema mistakes are reported', (t) => {
  const bad = (schema: FlagSchema, re: RegExp) =>
    t.throws(() => parseServiceFlags(schema, [], {}), { message: re });
  bad({ Workers: { type: 'int', doc: 'x' } }, /--Workers: name must be kebab-case/);
  bad({ help: { type: 'bool', doc: 'x' } }, /--help is reserved/);
  bad({ verbose: { type: 'bool', doc: 'x' }, 'no-verbose': { type: 'string', doc: 'x' } }, /clashes/);
  bad(
    { a: { type: 'string', env: 'X', doc: 'x' }, b: { type: 'string', env: 'X', doc: 'x' } },
    /env var X is also used by --a/,
  );
  bad({ a: { type: 'string', env: 'lower', doc: 'x' } }, /upper snake case/);
  bad(
    { a: { type: 'enum', choices: ['x'], default: 'y', doc: 'x' } },
    /default "y" is not one of its choices/,
  );
  bad({ a: { type: 'enum', choices: [], doc: 'x' } }, /at least one choice/);
  bad({ a: { type: 'int', default: 0.5, doc: 'x' } }, /default 0.5 is not an integer/);
  bad({ a: { type: 'int', default: 0, min: 1, doc: 'x' } }, /default 0 is not an integer >= 1/);
  t.is(envName('rollout-workers', { type: 'int', doc: '' }), 'RMT_ROLLOUT_WORKERS');
});

test('help text lists flag, env var, default and doc in aligned columns', (t) => {
  const text = helpText(FLAGS, 'usage: rmt-rollout [flags]\n\nGenerates rollouts for the coordinator.');
  const lines = text.split('\n');
  t.is(lines[0], 'usage: rmt-rollout [flags]');
  const header = lines.find((l) => l.trimStart().startsWith('FLAG'))!;
  const rows = lines.slice(lines.indexOf(header) + 1).filter((l) => l.trim() !== '');
  t.is(rows.length, Object.keys(FLAGS).length + 1);
  const envCol = header.indexOf('ENV');
  const defCol = header.indexOf('DEFAULT');
  const docCol = header.indexOf('DESCRIPTION');
  const row = (flag: string) => rows.find((r) => r.startsWith(`  ${flag}`))!;
  for (const [name, spec] of Object.entries(FLAGS)) {
    const r = row(`--${name}`);
    t.is(r.slice(envCol).split(' ')[0], envName(name, spec), name);
    t.true(r.slice(docCol).startsWith(spec.doc), name);
    t.is(r[docCol - 1], ' ');
  }
  t.is(row('--rollout-workers <int>').slice(defCol).split(' ')[0], '2');
  t.true(row('--rollout-workers').endsWith('rollout worker processes (an integer >= 1)'));
  t.is(row('--run-id <string>').slice(defCol).split(' ')[0], '(required)');
  t.is(row('--bus-url').slice(defCol).split(' ')[0], '-');
  t.true(row('--backend <webgpu|webasm|cpu>').includes(' cpu '));
  t.is(row('--dry-run, --no-dry-run').slice(defCol).split(' ')[0], 'false');
  t.true(rows.at(-1)!.startsWith('  -h, --help'));
  t.true(lines.every((l) => l === l.trimEnd()));
});

test('parseServiceFlagsOrExit: help to stdout with exit 0, a bad flag to stderr with exit 2', (t) => {
  const script = [
    "import { parseServiceFlagsOrExit } from './shared/config/service-flags.js';",
    "const f = parseServiceFlagsOrExit({ port: { type: 'int', default: 9000, doc: 'listen port' } }, 'usage: svc');",
    'console.log(JSON.stringify(f));',
  ].join('\n');
  const run = (...args: string[]) =>
    spawnSync(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script, '--', 'argv1', ...args],
      {
        encoding: 'utf8',
        env: { ...process.env, RMT_PORT: '' },
      },
    );
  const ok = run('--port', '1234');
  t.is(ok.status, 0, ok.stderr);
  t.deepEqual(JSON.parse(ok.stdout), { port: 1234 });
  const help = run('--help');
  t.is(help.status, 0);
  t.regex(help.stdout, /^usage: svc\n[\s\S]*--port <int> {3}RMT_PORT {3}9000 {6}listen port$/m);
  const bad = run('--port', 'x');
  t.is(bad.status, 2);
  t.is(bad.stdout, '');
  t.is(bad.stderr, 'error: --port (env RMT_PORT): expected an integer, got "x"\n');
});

test('list flags repeat; flags without env vars leave the ENV column out of the help', (t) => {
  const schema = withoutEnv(
    defineFlags({
      set: { type: 'list', env: false, arg: '<k=v>', doc: 'an override' },
      mode: { type: 'enum', choices: ['ntr', 'ntp'], default: 'ntr', doc: 'how' },
    }),
  );
  const f = parseServiceFlags(schema, ['--set', 'a=1', '--set=b=2'], { RMT_MODE: 'ntp' });
  t.deepEqual(f, { set: ['a=1', 'b=2'], mode: 'ntr' });
  t.deepEqual(parseServiceFlags(schema, [], {}).set, []);
  t.throws(() => parseServiceFlags(schema, ['--mdoe', 'ntp'], {}), {
    message: /^unknown flag --mdoe \(did you mean "--mode"\?\) \(see --help\)$/,
  });
  const help = helpText(schema, 'usage: x');
  t.regex(help, /^ {2}FLAG {2,}DEFAULT {3}DESCRIPTION$/m);
  t.regex(help, /--set <k=v> +- +an override \(repeatable\)/);
  t.notRegex(help, /RMT_/);
  t.throws(() => parseServiceFlags({ l: { type: 'list', doc: 'x' } as never }, [], {}), {
    message: /a list flag has no env var/,
  });
});
