/**
 * Emitter is a minimal typed event emitter. A listener that throws does not stop the
 * others; the error goes to onListenerError.
 */
export class Emitter<M extends { [K in keyof M]: (...args: any[]) => void }> {
  private readonly listeners = new Map<keyof M, Set<M[keyof M]>>();

  constructor(private readonly onListenerError: (err: unknown) => void = reportError) {}

  /** on adds a listener and returns a function that removes it. */
  on<K extends keyof M>(name: K, fn: M[K]): () => void {
    let set = this.listeners.get(name);
    if (!set) {
      set = new Set();
      this.listeners.set(name, set);
    }
    set.add(fn);
    return () => {
      set.delete(fn);
    };
  }

  emit<K extends keyof M>(name: K, ...args: Parameters<M[K]>): void {
    const set = this.listeners.get(name);
    if (!set || set.size === 0) return;
    for (const fn of [...set]) {
      try {
        (fn as (...a: Parameters<M[K]>) => void)(...args);
      } catch (err) {
        this.onListenerError(err);
      }
    }
  }

  listenerCount(name: keyof M): number {
    return this.listeners.get(name)?.size ?? 0;
  }
}

function reportError(err: unknown): void {
  // Surface listener bugs without breaking the client's own state.
  setTimeout(() => {
    throw err;
  }, 0);
}
