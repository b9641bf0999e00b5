import { createHash, type Hash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';

const FLUSH_TOKENS = 1 << 20;

/** What a finished stream file holds: its token count and the sha256 of its int32 bytes. */
export interface StreamInfo {
  tokens: number;
  sha256: string;
}

/**
 * A token stream written to disk as it is produced (little-endian int32 ids, plus one byte per
 * token marking math answer digits), so a corpus larger than memory tokenizes in bounded memory.
 * Files are written under a temporary name and renamed when complete.
 */
export class StreamFileWriter {
  private readonly ids = new Int32Array(FLUSH_TOKENS);
  private readonly answers = new Uint8Array(FLUSH_TOKENS);
  private fill = 0;
  private total = 0;
  private readonly hash: Hash = createHash('sha256');
  private readonly idFd: number;
  private readonly answerFd: number;

  constructor(
    private readonly path: string,
    private readonly answerPath: string,
  ) {
    this.idFd = openSync(`${path}.tmp`, 'w');
    this.answerFd = openSync(`${answerPath}.tmp`, 'w');
  }

  get length(): number {
    return this.total;
  }

  /** Appends ids; `answerIdx` are indices into `ids` of math answer digits. */
  push(ids: readonly number[], answerIdx: readonly number[] = []): void {
    const marks = new Set(answerIdx);
    for (let i = 0; i < ids.length; i++) {
      this.ids[this.fill] = ids[i];
      this.answers[this.fill] = marks.has(i) ? 1 : 0;
      this.fill++;
      this.total++;
      if (this.fill === FLUSH_TOKENS) this.flush();
    }
  }

  private flush(): void {
    const bytes = new Uint8Array(this.ids.buffer, 0, this.fill * 4);
    writeSync(this.idFd, bytes);
    this.hash.update(bytes);
    writeSync(this.answerFd, this.answers.subarray(0, this.fill));
    this.fill = 0;
  }

  finish(): StreamInfo {
    this.flush();
    closeSync(this.idFd);
    closeSync(this.answerFd);
    renameSync(`${this.path}.tmp`, this.path);
    renameSync(`${this.answerPath}.tmp`, this.answerPath);
    return { tokens: this.total, sha256: this.hash.digest('hex') };
  }

  /** Closes and removes the partial files. */
  abort(): void {
    closeSync(this.idFd);
    closeSync(this.answerFd);
    rmSync(`${this.path}.tmp`, { force: true });
    rmSync(`${this.answerPath}.tmp`, { force: true });
  }
}

/** The first `n` tokens of a stream file (all when n is 0 or more than it holds) and their answer marks. */
export function readStreamPrefix(
  path: string,
  answerPath: string,
  n: number,
): { tokens: Int32Array; answers: Uint8Array } {
  const fd = openSync(path, 'r');
  const afd = openSync(answerPath, 'r');
  try {
    const size = fstatSync(fd).size;
    const count = n > 0 ? Math.min(n, size / 4) : size / 4;
    const tokens = new Int32Array(count);
    readFully(fd, new Uint8Array(tokens.buffer));
    const answers = new Uint8Array(count);
    readFully(afd, answers);
    return { tokens, answers };
  } finally {
    closeSync(fd);
    closeSync(afd);
  }
}

function readFully(fd: number, into: Uint8Array): void {
  let at = 0;
  while (at < into.length) {
    const n = readSync(fd, into, at, into.length - at, at);
    if (n === 0) throw new Error('stream file ended early');
    at += n;
  }
}
