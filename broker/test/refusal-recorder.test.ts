import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../src/clock.js';
import { RefusalRecorder } from '../src/identity/refusal-recorder.js';

describe('RefusalRecorder', () => {
  it('records a burst, then the sustained rate, and hands the count of held-back refusals to the next record', () => {
    const clock = new ManualClock();
    const recorder = new RefusalRecorder(clock, { perSecond: 2, burst: 3 });
    assert.deepEqual([recorder.admit(), recorder.admit(), recorder.admit()], [
      { record: true, suppressed: 0 },
      { record: true, suppressed: 0 },
      { record: true, suppressed: 0 },
    ]);
    assert.deepEqual(recorder.admit(), { record: false });
    assert.deepEqual(recorder.admit(), { record: false });
    clock.advance(499);
    assert.deepEqual(recorder.admit(), { record: false }, 'less than one token refilled');
    clock.advance(1);
    assert.deepEqual(recorder.admit(), { record: true, suppressed: 3 });
    assert.deepEqual(recorder.admit(), { record: false });
    clock.advance(60_000);
    // A long quiet spell refills only up to the burst.
    const after = Array.from({ length: 4 }, () => recorder.admit());
    assert.deepEqual(after, [{ record: true, suppressed: 1 }, { record: true, suppressed: 0 }, { record: true, suppressed: 0 }, { record: false }]);
  });

  it('is not fooled by a clock that steps back', () => {
    const clock = new ManualClock();
    const recorder = new RefusalRecorder(clock, { perSecond: 1, burst: 1 });
    assert.equal(recorder.admit().record, true);
    clock.advance(-10_000);
    assert.equal(recorder.admit().record, false);
    clock.advance(1_000);
    assert.equal(recorder.admit().record, true);
  });
});
