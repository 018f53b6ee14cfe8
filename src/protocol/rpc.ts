/**
 * One RPC helper for every channel (host <-> webview, host <-> worker): fire-and-forget events, and requests
 * answered by id, with cancellation. Transport-neutral: the caller supplies `post` and feeds `receive`.
 */

/** Requests one side can make: method name -> params and result types. */
export type RequestMap = Record<string, { params: unknown; result: unknown }>;

/** An event: a message with a literal `type`. */
export interface EventMessage {
  type: string;
}

/** What travels on the wire. */
export type RpcMessage =
  | { kind: 'request'; id: number; method: string; params: unknown }
  | { kind: 'response'; id: number; ok: true; result: unknown }
  | { kind: 'response'; id: number; ok: false; error: RpcErrorInfo }
  | { kind: 'cancel'; id: number }
  | { kind: 'event'; event: EventMessage };

/** A failure carried across the channel. `input` marks the user's fault (bad file) as opposed to a bug. */
export interface RpcErrorInfo {
  message: string;
  name: string;
  input: boolean;
  file?: string;
}

/** An error rethrown on the requesting side, with the remote name and kind kept. */
export class RpcError extends Error {
  readonly input: boolean;
  readonly file: string | undefined;
  constructor(info: RpcErrorInfo) {
    super(info.message);
    this.name = info.name;
    this.input = info.input;
    this.file = info.file;
  }
}

/** Thrown on the requesting side when a request was cancelled. */
export class CancelledError extends Error {
  constructor() {
    super('cancelled');
    this.name = 'CancelledError';
  }
}

/** A request handler: gets the params and an AbortSignal that fires when the requester cancels. */
export type Handlers<TIn extends RequestMap> = {
  [K in keyof TIn]: (params: TIn[K]['params'], signal: AbortSignal) => Promise<TIn[K]['result']> | TIn[K]['result'];
};

/** Sends a message, with buffers to transfer where the transport can. */
export type Post = (message: RpcMessage, transfer?: ArrayBuffer[]) => void;

/** Turns a thrown value into what crosses the channel. */
export type ErrorEncoder = (err: unknown) => RpcErrorInfo;

const defaultEncoder: ErrorEncoder = (err) => {
  const e = err as { message?: string; name?: string; file?: string };
  return {
    message: e?.message ?? String(err),
    name: e?.name ?? 'Error',
    input: e?.name === 'InputError' || e?.name === 'ModelFormatError',
    file: typeof e?.file === 'string' ? e.file : undefined,
  };
};

/**
 * One end of a channel. `TOut` are the requests this end makes, `TIn` the ones it answers, `TEvOut`/`TEvIn`
 * the events it sends and receives.
 */
export class RpcEndpoint<TOut extends RequestMap, TIn extends RequestMap, TEvOut extends EventMessage, TEvIn extends EventMessage> {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly running = new Map<number, AbortController>();
  private disposed = false;
  private readonly idleWaiters: Array<{ ignore: number; resolve: () => void }> = [];

  constructor(
    private readonly post: Post,
    private readonly handlers: Handlers<TIn>,
    private readonly onEvent: (event: TEvIn) => void = () => {},
    private readonly encodeError: ErrorEncoder = defaultEncoder,
  ) {}

  /** Sends a request and resolves with the other side's result. Aborting `signal` cancels it on both sides. */
  request<K extends keyof TOut & string>(method: K, params: TOut[K]['params'], opts: { signal?: AbortSignal; transfer?: ArrayBuffer[] } = {}): Promise<TOut[K]['result']> {
    if (this.disposed) return Promise.reject(new Error('channel closed'));
    if (opts.signal?.aborted) return Promise.reject(new CancelledError());
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        if (!this.pending.delete(id)) return;
        this.post({ kind: 'cancel', id });
        reject(new CancelledError());
      };
      this.pending.set(id, {
        resolve: (v) => {
          opts.signal?.removeEventListener('abort', onAbort);
          resolve(v as TOut[K]['result']);
        },
        reject: (e) => {
          opts.signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      });
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.post({ kind: 'request', id, method, params }, opts.transfer);
    });
  }

  /** Sends an event; nothing comes back. */
  sendEvent(event: TEvOut, transfer?: ArrayBuffer[]): void {
    if (!this.disposed) this.post({ kind: 'event', event }, transfer);
  }

  /** Feeds a message from the transport. Returns false for messages that are not RPC messages. */
  receive(data: unknown): boolean {
    const msg = data as RpcMessage;
    if (!msg || typeof msg !== 'object' || typeof (msg as { kind?: unknown }).kind !== 'string') return false;
    switch (msg.kind) {
      case 'request':
        void this.answer(msg.id, msg.method, msg.params);
        return true;
      case 'response': {
        const p = this.pending.get(msg.id);
        if (!p) return true; // cancelled meanwhile
        this.pending.delete(msg.id);
        if (msg.ok) p.resolve(msg.result);
        else p.reject(new RpcError(msg.error));
        return true;
      }
      case 'cancel':
        this.running.get(msg.id)?.abort();
        return true;
      case 'event':
        this.onEvent(msg.event as TEvIn);
        return true;
      default: {
        const never: never = msg;
        return Boolean(never);
      }
    }
  }

  /**
   * Resolves once at most `ignore` handlers are still running (a handler that waits for the others to finish
   * passes 1 for itself). A worker that is idle can be terminated safely.
   */
  whenIdle(ignore = 0): Promise<void> {
    if (this.running.size <= ignore) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push({ ignore, resolve }));
  }

  /** Rejects every pending request and aborts every running handler. */
  dispose(reason = 'channel closed'): void {
    this.disposed = true;
    for (const p of this.pending.values()) p.reject(new Error(reason));
    this.pending.clear();
    for (const c of this.running.values()) c.abort();
    this.running.clear();
  }

  private async answer(id: number, method: string, params: unknown): Promise<void> {
    const handler = (this.handlers as Record<string, (p: unknown, s: AbortSignal) => unknown>)[method];
    const controller = new AbortController();
    this.running.set(id, controller);
    try {
      if (!handler) throw new Error(`unknown request '${method}'`);
      const result = await handler(params, controller.signal);
      if (!controller.signal.aborted) this.post({ kind: 'response', id, ok: true, result }, transferablesOf(result));
    } catch (err) {
      if (!controller.signal.aborted && !this.disposed) this.post({ kind: 'response', id, ok: false, error: this.encodeError(err) });
    } finally {
      this.running.delete(id);
      for (const w of this.idleWaiters.filter((w) => this.running.size <= w.ignore)) {
        this.idleWaiters.splice(this.idleWaiters.indexOf(w), 1);
        w.resolve();
      }
    }
  }
}

/** A result that is itself an ArrayBuffer, or has ArrayBuffer fields at the top level, is transferred. */
function transferablesOf(result: unknown): ArrayBuffer[] | undefined {
  if (result instanceof ArrayBuffer) return [result];
  if (result && typeof result === 'object') {
    const found = Object.values(result).filter((v): v is ArrayBuffer => v instanceof ArrayBuffer);
    return found.length ? found : undefined;
  }
  return undefined;
}
