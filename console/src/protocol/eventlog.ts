// The events the console holds, in seq order (the store's order), indexed by incident session.
// Bounded: past `capacity` the oldest are forgotten (a timeline shows a gap, never a duplicate).
import type { GatewayEvent } from "./envelope";

export class EventLog {
  private events: GatewayEvent[] = [];
  private readonly seqs = new Set<number>();

  constructor(private readonly capacity = 20_000) {}

  /** Adds an event; false when its seq is held already. Kept sorted by seq even when a replay
   * delivers older events after newer ones. */
  add(event: GatewayEvent): boolean {
    if (this.seqs.has(event.seq)) return false;
    this.seqs.add(event.seq);
    const last = this.events[this.events.length - 1];
    if (last === undefined || last.seq < event.seq) {
      this.events.push(event);
    } else {
      let i = this.events.length;
      while (i > 0 && this.events[i - 1].seq > event.seq) i -= 1;
      this.events.splice(i, 0, event);
    }
    while (this.events.length > this.capacity) {
      const gone = this.events.shift();
      if (gone) this.seqs.delete(gone.seq);
    }
    return true;
  }

  all(): readonly GatewayEvent[] {
    return this.events;
  }

  forSession(sessionId: string): GatewayEvent[] {
    return this.events.filter((e) => e.session_id === sessionId);
  }

  ofType(type: string): GatewayEvent[] {
    return this.events.filter((e) => e.type === type);
  }

  clear(): void {
    this.events = [];
    this.seqs.clear();
  }

  get size(): number {
    return this.events.length;
  }
}
