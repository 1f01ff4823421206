// The playout's jitter buffer: frames arrive over a WebSocket in bursts, out of order never
// (TCP) but late or lost upstream (the gateway drops audio on a slow link: sequence gaps). Sans-I/O.
// - Playout starts once `target` frames are held (absorbs the usual burstiness) and then takes
//   one frame per 20 ms of the audio clock; an empty buffer is an underrun (silence played) and
//   playout waits for `target` frames again.
// - Bounded: more than `max` frames held (the sender runs ahead, or the tab was throttled and
//   then a burst came) drops the oldest down to `target`, so the delay never grows without end.
// - A frame older than the last one played (a duplicate or late one) is dropped; a gap in the
//   sequence plays as silence for the missing frames (at most `max`), keeping the timing.

export interface JitterStats {
  received: number;
  played: number;
  late: number;
  overflowDropped: number;
  underruns: number;
  concealed: number;
}

/** seq a is before seq b, modulo 2^32. */
export function seqBefore(a: number, b: number): boolean {
  const d = (b - a) >>> 0;
  return d !== 0 && d < 0x80000000;
}

export class JitterBuffer {
  private frames: { seq: number; samples: Int16Array }[] = [];
  private nextSeq: number | null = null;
  private playing = false;
  readonly stats: JitterStats = { received: 0, played: 0, late: 0, overflowDropped: 0, underruns: 0, concealed: 0 };

  constructor(
    readonly frameSize: number,
    readonly target = 3,
    readonly max = 10,
  ) {
    if (!(target >= 1 && max >= target)) throw new RangeError("need 1 <= target <= max");
  }

  get depth(): number {
    return this.frames.length;
  }

  push(seq: number, samples: Int16Array): void {
    this.stats.received += 1;
    if (this.nextSeq !== null && seqBefore(seq, this.nextSeq)) {
      this.stats.late += 1;
      return;
    }
    // Insert in order (normally at the end).
    let i = this.frames.length;
    while (i > 0 && seqBefore(seq, this.frames[i - 1].seq)) i -= 1;
    if (i > 0 && this.frames[i - 1].seq === seq) {
      this.stats.late += 1;
      return;
    }
    this.frames.splice(i, 0, { seq: seq >>> 0, samples });
    if (this.frames.length > this.max) {
      const drop = this.frames.length - this.target;
      this.frames.splice(0, drop);
      this.stats.overflowDropped += drop;
      this.nextSeq = this.frames[0].seq;
    }
  }

  /** The next 20 ms to play: a frame, silence (a gap or an underrun), or null before playout
   * starts (the caller plays silence and does not advance). */
  pop(): Int16Array | null {
    if (!this.playing) {
      if (this.frames.length < this.target) return null;
      this.playing = true;
      this.nextSeq = this.frames[0].seq;
    }
    const head = this.frames[0];
    if (head === undefined) {
      this.stats.underruns += 1;
      this.playing = false;
      return null;
    }
    const expected = this.nextSeq as number;
    // A gap longer than the buffer (the sender restarted, a long loss): play on from the head.
    if (((head.seq - expected) >>> 0) > this.max) this.nextSeq = head.seq;
    if (head.seq === this.nextSeq) {
      this.frames.shift();
      this.nextSeq = (head.seq + 1) >>> 0;
      this.stats.played += 1;
      return head.samples;
    }
    // A short gap: silence in place of the missing frame.
    this.nextSeq = (expected + 1) >>> 0;
    this.stats.concealed += 1;
    return new Int16Array(this.frameSize);
  }
}
