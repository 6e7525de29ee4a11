// The bundle set currently in force. Readers take a snapshot; a reload swaps it
// atomically and bumps the generation so cached verifications are redone.
import type { BundleSet } from './bundle.js';

export type BundleListener = (bundles: BundleSet) => void;

export class BundleStore {
  private bundles: BundleSet;
  private gen = 0;
  private readonly listeners = new Set<BundleListener>();

  constructor(initial: BundleSet) {
    this.bundles = initial;
  }

  get current(): BundleSet {
    return this.bundles;
  }

  get generation(): number {
    return this.gen;
  }

  replace(next: BundleSet): void {
    this.bundles = next;
    this.gen++;
    for (const listener of this.listeners) listener(next);
  }

  onChange(listener: BundleListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
