// Float samples (Web Audio, -1..1) to and from PCM16 frames of the protocol's size
// (docs/protocol.md, "Binary media frames": 20 ms). Sans-I/O.

export function floatToPcm16(x: Float32Array): Int16Array {
  const out = new Int16Array(x.length);
  for (let i = 0; i < x.length; i += 1) {
    const v = Math.max(-1, Math.min(1, x[i]));
    out[i] = v < 0 ? Math.round(v * 32768) : Math.round(v * 32767);
  }
  return out;
}

export function pcm16ToFloat(x: Int16Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i += 1) out[i] = x[i] / 32768;
  return out;
}

/** Root mean square of `x` (0..1 for full-scale floats). */
export function rms(x: ArrayLike<number>, scale = 1): number {
  if (x.length === 0) return 0;
  let acc = 0;
  for (let i = 0; i < x.length; i += 1) {
    const v = x[i] / scale;
    acc += v * v;
  }
  return Math.sqrt(acc / x.length);
}

/** A level meter's value from an RMS: 0 at -60 dBFS (and below), 1 at 0 dBFS. */
export function meterLevel(rmsValue: number): number {
  if (rmsValue <= 0) return 0;
  const db = 20 * Math.log10(rmsValue);
  return Math.max(0, Math.min(1, (db + 60) / 60));
}

/** Cuts a stream of float samples into PCM16 frames of `size` samples (the rest waits). */
export class Framer {
  private readonly buf: Float32Array;
  private fill = 0;

  constructor(readonly size: number) {
    if (!(size > 0 && Number.isInteger(size))) throw new RangeError("frame size must be a positive integer");
    this.buf = new Float32Array(size);
  }

  push(x: Float32Array): Int16Array[] {
    const frames: Int16Array[] = [];
    let i = 0;
    while (i < x.length) {
      const take = Math.min(this.size - this.fill, x.length - i);
      this.buf.set(x.subarray(i, i + take), this.fill);
      this.fill += take;
      i += take;
      if (this.fill === this.size) {
        frames.push(floatToPcm16(this.buf));
        this.fill = 0;
      }
    }
    return frames;
  }
}

/** A FIFO of float samples that the playout pulls in render quanta (128 samples). */
export class SampleFifo {
  private buf: Float32Array;
  private start = 0;
  private end = 0;

  constructor(capacity: number) {
    this.buf = new Float32Array(capacity);
  }

  get length(): number {
    return this.end - this.start;
  }

  push(x: Float32Array): void {
    if (this.end + x.length > this.buf.length) {
      const live = this.buf.subarray(this.start, this.end);
      const next = this.buf.length >= live.length + x.length ? this.buf : new Float32Array((live.length + x.length) * 2);
      next.set(live, 0); // same buffer: set copies overlapping ranges correctly
      this.buf = next;
      this.end = live.length;
      this.start = 0;
    }
    this.buf.set(x, this.end);
    this.end += x.length;
  }

  /** Fills `out` from the FIFO; returns how many samples were there (the rest is left as is). */
  pull(out: Float32Array): number {
    const n = Math.min(out.length, this.length);
    out.set(this.buf.subarray(this.start, this.start + n));
    this.start += n;
    if (this.start === this.end) this.start = this.end = 0;
    return n;
  }
}
