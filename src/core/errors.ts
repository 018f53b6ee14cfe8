/** A problem with what the user gave us (a file, a flag, a dataset). The CLI exits 1 on it. */
export class InputError extends Error {
  /** The file at fault, when there is one. */
  readonly file: string | undefined;

  constructor(file: string | undefined, problem: string) {
    super(file ? `${file}: ${problem}` : problem);
    this.name = 'InputError';
    this.file = file;
  }
}

/** A model file that is not, or not a readable, model of the format it was opened as. */
export class ModelFormatError extends InputError {
  constructor(file: string, problem: string) {
    super(file, problem);
    this.name = 'ModelFormatError';
  }
}

/** A feature that this version of Whittle does not have yet; said plainly rather than faked. */
export class NotImplementedError extends Error {
  constructor(what: string) {
    super(`${what} is not available yet in this version of Whittle`);
    this.name = 'NotImplementedError';
  }
}

/** One line for a user: no stack, no newlines. */
export function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(/\s*\n\s*/g, ' ').trim();
}
