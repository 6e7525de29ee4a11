// TurnSlots (requests/turns.ts): a bounded number of requests decided per turn of
// the event loop, the rest in later turns, first come first served. The turns are
// driven by hand here (a NextTurn that collects callbacks); request-service's use of
// it, with real setImmediate turns, is tested in unit-request-service.test.ts.
import assert from 'node:assert/strict';
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
  it('lets perTurn callers through at once and the rest in the following turns, in arrival order', async () => {
    const turns = manualTurns();
    const slots = new TurnSlots(3, turns.nextTurn);
    const order: string[] = [];
    const sync = ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((name) => taker(slots, order, name));
    assert.deepEqual(sync, [true, true, true, false, false, false, false], 'three go on in this turn');
    assert.deepEqual(order, ['a', 'b', 'c']);
    assert.equal(slots.queued, 4);
    assert.equal(turns.scheduled, 1, 'one turn scheduled, not one per caller');

    await turns.run();
    assert.deepEqual(order, ['a', 'b', 'c', 'd', 'e', 'f'], 'the next three, in order');
    await turns.run();
    assert.deepEqual(order, ['a', 'b', 'c', 'd', 'e', 'f', 'g']);
    assert.equal(slots.queued, 0);
    await turns.run(); // the turn that resets the count of the last one
    assert.equal(turns.scheduled, 0, 'nothing scheduled once nobody waits');
  });

  it('never makes a lone caller wait, and counts afresh each turn', async () => {
    const turns = manualTurns();
    const slots = new TurnSlots(2, turns.nextTurn);
    for (let turn = 0; turn < 3; turn++) {
      assert.equal(slots.take(), undefined, `turn ${turn}: first caller`);
      assert.equal(slots.take(), undefined, `turn ${turn}: second caller`);
      assert.ok(slots.take() instanceof Promise, `turn ${turn}: the third waits`);
      await turns.run();
      // The waiter took one of this turn's two slots; one is left.
      assert.equal(slots.take(), undefined, `turn ${turn}: one slot left after the released waiter`);
      assert.ok(slots.take() instanceof Promise);
      await turns.run();
      await turns.run();
    }
  });

  it('puts a newcomer behind those already waiting, even with a slot free in its turn', async () => {
    const turns = manualTurns();
    const slots = new TurnSlots(2, turns.nextTurn);
    const order: string[] = [];
    ['a', 'b', 'c', 'd', 'e'].forEach((name) => taker(slots, order, name));
    await turns.run(); // c and d released: this turn's two slots
    assert.deepEqual(order, ['a', 'b', 'c', 'd']);
    assert.equal(taker(slots, order, 'f'), false, 'e still waits, so f queues behind it');
    await turns.run();
    assert.deepEqual(order, ['a', 'b', 'c', 'd', 'e', 'f']);
  });

  it('with real turns: a burst is spread over turns, and I/O callbacks run between them', async () => {
    const slots = new TurnSlots(4);
    const seen: string[] = [];
    const burst = Array.from({ length: 10 }, async (_, i) => {
      const slot = slots.take();
      if (slot !== undefined) await slot;
      seen.push(`r${i}`);
    });
    // A callback due after the first turn's work, as a Redis reply or a new request would be.
    setImmediate(() => seen.push('io'));
    await Promise.all(burst);
    assert.deepEqual(seen, ['r0', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7', 'io', 'r8', 'r9']);
  });

  it('refuses a bound that is not a positive integer', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      assert.throws(() => new TurnSlots(bad), { name: 'RangeError', message: /perTurn must be a positive integer/ });
    }
    assert.ok(Number.isSafeInteger(REQUESTS_PER_TURN) && REQUESTS_PER_TURN > 1);
  });
});
