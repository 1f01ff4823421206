// Reconnect delays: exponential with full jitter, capped, reset once a connection got through
// hello. Sans-I/O: the random source is injected, the caller owns the timer.

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  factor: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 250, maxMs: 10_000, factor: 2 };

export class Backoff {
  private attempt = 0;

  constructor(
    private readonly opts: BackoffOptions = DEFAULT_BACKOFF,
    private readonly random: () => number = Math.random,
  ) {}

  /** The ceiling of the next delay (without jitter). */
  ceiling(): number {
    return Math.min(this.opts.maxMs, this.opts.initialMs * this.opts.factor ** this.attempt);
  }

  /** The delay before the next attempt, in [ceiling/2, ceiling]: never 0 (no reconnect storm
   * against a gateway that is restarting), never over `maxMs`. */
  next(): number {
    const c = this.ceiling();
    this.attempt += 1;
    return Math.round(c / 2 + (this.random() * c) / 2);
  }

  /** At least `ms` (a `retry_after_s` the gateway asked for), else the next delay. */
  nextAtLeast(ms: number): number {
    return Math.max(ms, this.next());
  }

  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}
