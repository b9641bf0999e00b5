/**
 * Many readers or one writer at a time, writers first: a reader that arrives while a write waits
 * or runs waits for it. Lets the learner serve its weights while a step is waiting on other
 * learners, yet never in the middle of the optimizer writing them.
 */
export class ReadWriteLock {
  private readers = 0;
  private writing: Promise<void> | null = null;
  private drained: (() => void) | null = null;

  async read<T>(work: () => Promise<T>): Promise<T> {
    while (this.writing) await this.writing;
    this.readers++;
    try {
      return await work();
    } finally {
      this.readers--;
      if (this.readers === 0) this.drained?.();
    }
  }

  async write<T>(work: () => Promise<T>): Promise<T> {
    while (this.writing) await this.writing;
    let release!: () => void;
    this.writing = new Promise<void>((r) => {
      release = r;
    });
    try {
      while (this.readers > 0) {
        await new Promise<void>((r) => {
          this.drained = r;
        });
      }
      this.drained = null;
      return await work();
    } finally {
      this.writing = null;
      release();
    }
  }
}
