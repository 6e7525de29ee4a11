// TurnSlots (requests/turns.ts): a bounded number of requests decided per turn of
// the event loop, the rest in later turns, first come first served. The turns are
// driven by hand here (a NextTurn that collects callbacks); request-service's use of
// it, with real setImmediate turns, is tested in unit-request-service.test.ts.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { REQUESTS_PER_TURN, TurnSlots } from '../src/requests/turns.js';

/** A NextTurn whose turns run only when the test says so. */
function manualTurns() {
  const pending: (() => void)[] = [];
  return {
    nextTurn: (callback: () => void) => void pending.push(callback),
    get scheduled() {
      return pending.length;
    },
    /** Runs the turn scheduled so far, then lets its released callers' continuations run. */
    async run() {
      const due = pending.splice(0);
      for (const callback of due) callback();
      await Promise.resolve();
    },
  };
}

/** Takes a slot and records, in `order`, when the caller got it. */
function taker(slots: TurnSlots, order: string[], name: string): boolean {
  const slot = slots.take();
  if (slot === undefined) {
    order.push(name);
    return true;
  }
  void slot.then(() => order.push(name));
  return false;
}

describe('TurnSlots: requests decided per turn of the event loop', () => {
  it('lets perTurn callers through at once and the rest in the turns after the next I/O, in arrival order', async () => {
    const turns = manualTurns();
    const slots = new TurnSlots(3, turns.nextTurn);
    const order: string[] = [];
    const sync = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].map((name) => taker(slots, order, name));
    assert.deepEqual(sync, [true, true, true, false, false, false, false, false], 'three go on in this turn');
    assert.deepEqual(order, ['a', 'b', 'c']);
    assert.equal(slots.queued, 5);
    assert.equal(turns.scheduled, 1, 'one turn scheduled, not one per caller');

    // The callback of the turn the burst arrived in: its three slots are used, nobody more goes on
    // before the event loop has polled for I/O again.
    await turns.run();
    assert.deepEqual(order, ['a', 'b', 'c']);
    await turns.run();
    assert.deepEqual(order, ['a', 'b', 'c', 'd', 'e', 'f'], 'the next three, in order');
    await turns.run();
    assert.deepEqual(order, ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']);
    assert.equal(slots.queued, 0);
    await turns.run(); // the turn after the last release
    assert.equal(turns.scheduled, 0, 'nothing scheduled once nobody waits');
  });

  it('never makes a lone caller wait, and counts afresh each turn', async () => {
    const turns = manualTurns();
    const slots = new TurnSlots(2, turns.nextTurn);
    for (let turn = 0; turn < 3; turn++) {
      assert.equal(slots.take(), undefined, `turn ${turn}: first caller`);
      await turns.run();
      assert.equal(turns.scheduled, 0, `turn ${turn}: nothing left to schedule`);
    }
    assert.equal(slots.take(), undefined);
    assert.equal(slots.take(), undefined);
    assert.ok(slots.take() instanceof Promise, 'the third in one turn waits');
  });

  it('lets the turn that released waiters take only what is left of its slots', async () => {
    const turns = manualTurns();
    const slots = new TurnSlots(4, turns.nextTurn);
    const order: string[] = [];
    ['a', 'b', 'c', 'd', 'e', 'f'].forEach((name) => taker(slots, order, name));
    await turns.run(); // the burst's own turn: e and f still wait
    await turns.run(); // e and f released: two of the next turn's four slots
    assert.deepEqual(order, ['a', 'b', 'c', 'd', 'e', 'f']);
    assert.equal(taker(slots, order, 'g'), true);
    assert.equal(taker(slots, order, 'h'), true);
    assert.equal(taker(slots, order, 'i'), false, 'four in this turn: i waits');
  });

  it('puts a newcomer behind those already waiting, even with a slot free in its turn', async () => {
    const turns = manualTurns();
    const slots = new TurnSlots(4, turns.nextTurn);
    const order: string[] = [];
    ['a', 'b', 'c', 'd', 'e'].forEach((name) => taker(slots, order, name));
    await turns.run(); // the burst's own turn: e waits
    await turns.run(); // e released: one of this turn's four slots
    // Three go on at once (another read in the same turn) and two more wait: the turn is full.
    assert.deepEqual(
      ['f', 'g', 'h', 'i', 'j'].map((name) => taker(slots, order, name)),
      [true, true, true, false, false],
    );
    await turns.run(); // f, g and h came before this callback: it releases only i
    assert.deepEqual(order, ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i']);
    // Two of the four slots are used (i released, nothing else yet), but j waits: k queues behind it.
    assert.equal(taker(slots, order, 'k'), false);
    await turns.run();
    assert.deepEqual(order.slice(-2), ['j', 'k']);
  });

  it('with real I/O: a burst read from a socket goes on perTurn at a time, other sockets read in between', async () => {
    const slots = new TurnSlots(16);
    const seen: string[] = [];
    const server = createServer((socket) =>
      socket.on('data', (data) => {
        if (data.toString() !== 'burst') {
          seen.push('io');
          return;
        }
        other.write('ping'); // ready for the next poll
        for (let i = 0; i < 64; i++) {
          const slot = slots.take();
          if (slot === undefined) seen.push('r');
          else void slot.then(() => seen.push('r'));
        }
      }),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const burst = connect(port, '127.0.0.1');
    const other = connect(port, '127.0.0.1');
    await Promise.all([once(burst, 'connect'), once(other, 'connect')]);
    try {
      const pinged = new Promise<void>((resolve) => {
        const check = () =>
          seen.includes('io') && seen.filter((s) => s === 'r').length === 64 ? resolve() : setImmediate(check);
        check();
      });
      burst.write('burst');
      await pinged;
      const before = seen.indexOf('io');
      assert.equal(before, 16, `16 went on before the other socket was read: ${seen.join('')}`);
    } finally {
      burst.destroy();
      other.destroy();
      server.close();
    }
  });

  it('refuses a bound that is not a positive integer', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      assert.throws(() => new TurnSlots(bad), { name: 'RangeError', message: /perTurn must be a positive integer/ });
    }
    assert.ok(Number.isSafeInteger(REQUESTS_PER_TURN) && REQUESTS_PER_TURN > 1);
  });
});
