/**
 * Timer is one pending timeout at a time: set replaces the pending one, clear cancels
 * it. The callback runs on the page's event loop; armed is false once it has started.
 */
export class Timer {
  private id: ReturnType<typeof setTimeout> | null = null;

  /** set runs fn after ms (at least 0), cancelling the pending callback if any. */
  set(ms: number, fn: () => void): void {
    this.clear();
    this.id = setTimeout(() => {
      this.id = null;
      fn();
    }, Math.max(0, ms));
  }

  /** clear cancels the pending callback; a no-op when none is pending. */
  clear(): void {
    if (this.id !== null) {
      clearTimeout(this.id);
      this.id = null;
    }
  }

  /** armed reports whether a callback is pending. */
  get armed(): boolean {
    return this.id !== null;
  }
}
