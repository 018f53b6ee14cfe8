import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CancelledError, RpcEndpoint, RpcError, type EventMessage, type RpcMessage } from '../../src/protocol/rpc';

type Req = {
  add: { params: { a: number; b: number }; result: number };
  slow: { params: Record<string, never>; result: string };
  fail: { params: { file: string }; result: never };
  bytes: { params: { n: number }; result: { data: ArrayBuffer } };
};
interface Ping extends EventMessage {
  type: 'ping';
  n: number;
}

/** Two endpoints wired back to back, delivering asynchronously as postMessage does. */
function pair() {
  const log: RpcMessage[] = [];
  let aborted = 0;
  const events: Ping[] = [];
  // eslint-disable-next-line prefer-const
  let server: RpcEndpoint<Record<never, never>, Req, Ping, Ping>;
  const client = new RpcEndpoint<Req, Record<never, never>, Ping, Ping>((m) => {
    log.push(m);
    setImmediate(() => server.receive(structuredClone(m)));
  }, {});
  server = new RpcEndpoint<Record<never, never>, Req, Ping, Ping>(
    (m) => setImmediate(() => client.receive(structuredClone(m))),
    {
      add: ({ a, b }) => a + b,
      slow: (_p, signal) =>
        new Promise((resolve, reject) => {
          const t = setTimeout(() => resolve('done'), 10_000);
          signal.addEventListener('abort', () => {
            aborted++;
            clearTimeout(t);
            reject(new Error('aborted'));
          });
        }),
      fail: ({ file }) => {
        const err = new Error(`${file}: bad`) as Error & { file: string };
        err.name = 'InputError';
        err.file = file;
        throw err;
      },
      bytes: ({ n }) => ({ data: new Uint8Array(n).fill(7).buffer }),
    },
    (e) => events.push(e),
  );
  return { client, server, log, events, aborted: () => aborted };
}

describe('RpcEndpoint', () => {
  test('matches responses to requests by id', async () => {
    const { client } = pair();
    const results = await Promise.all([client.request('add', { a: 1, b: 2 }), client.request('add', { a: 10, b: 20 })]);
    assert.deepEqual(results, [3, 30]);
  });

  test('carries errors across with their name, file and input flag', async () => {
    const { client } = pair();
    await assert.rejects(client.request('fail', { file: '/x.onnx' }), (err: unknown) => {
      assert.ok(err instanceof RpcError);
      assert.equal(err.message, '/x.onnx: bad');
      assert.equal(err.name, 'InputError');
      assert.equal(err.input, true);
      assert.equal(err.file, '/x.onnx');
      return true;
    });
  });

  test('an unknown method is an error, not a hang', async () => {
    const { client } = pair();
    await assert.rejects((client as unknown as RpcEndpoint<Record<string, { params: unknown; result: unknown }>, Record<never, never>, Ping, Ping>).request('nope', {}), /unknown request 'nope'/);
  });

  test('cancelling aborts the handler on the other side', async () => {
    const { client, log, aborted } = pair();
    const controller = new AbortController();
    const p = client.request('slow', {}, { signal: controller.signal });
    setTimeout(() => controller.abort(), 20);
    await assert.rejects(p, CancelledError);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(aborted(), 1);
    assert.ok(log.some((m) => m.kind === 'cancel'));
  });

  test('events arrive in order', async () => {
    const { client, events } = pair();
    for (let n = 0; n < 3; n++) client.sendEvent({ type: 'ping', n });
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(events.map((e) => e.n), [0, 1, 2]);
  });

  test('binary results come back intact', async () => {
    const { client } = pair();
    const { data } = await client.request('bytes', { n: 1000 });
    assert.equal(data.byteLength, 1000);
    assert.ok(new Uint8Array(data).every((v) => v === 7));
  });

  test('dispose rejects pending requests', async () => {
    const { client } = pair();
    const p = client.request('slow', {});
    client.dispose('closed for the test');
    await assert.rejects(p, /closed for the test/);
    await assert.rejects(client.request('add', { a: 1, b: 1 }), /channel closed/);
  });

  test('ignores messages that are not RPC messages', () => {
    const { client } = pair();
    assert.equal(client.receive('hello'), false);
    assert.equal(client.receive({ foo: 1 }), false);
  });
});
