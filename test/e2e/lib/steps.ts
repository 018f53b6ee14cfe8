/** A tiny step runner for the e2e programs: each step passes or fails, and the summary line is printed. */
export class Steps {
  passed = 0;
  failed = 0;
  private readonly t0 = Date.now();

  /** Runs one step; a failure is recorded and rethrown only when `fatal`. */
  async step(name: string, fn: () => Promise<void>, fatal = true): Promise<boolean> {
    try {
      await fn();
      this.passed++;
      this.log(`ok   ${name}`);
      return true;
    } catch (err) {
      this.failed++;
      this.log(`FAIL ${name}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
      if (fatal) throw err;
      return false;
    }
  }

  /** Prints a timestamped line. */
  log(message: string): void {
    console.log(`[${((Date.now() - this.t0) / 1000).toFixed(1)}s] ${message}`);
  }
}

/** Throws when a condition does not hold. */
export function check(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message);
}
