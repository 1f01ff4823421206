// Streaming sample-rate conversion between the AudioContext's rate (44.1 or 48 kHz, whatever the
// device runs) and the protocol's (8 or 16 kHz). Sans-I/O: chunks in, chunks out, state carried
// across chunks (no click at a chunk's edge). Downsampling first low-passes with a windowed-sinc
// FIR below the output's Nyquist (no aliasing of what the microphone hears above it), then
// interpolates linearly; upsampling interpolates linearly (the input has nothing above its Nyquist).

const TAPS = 31;

/** Windowed-sinc (Blackman) low-pass taps, cutoff `fc` as a fraction of the input rate, unity gain. */
export function lowPassTaps(fc: number, taps = TAPS): Float32Array {
  const h = new Float32Array(taps);
  const mid = (taps - 1) / 2;
  let sum = 0;
  for (let i = 0; i < taps; i += 1) {
    const x = i - mid;
    const sinc = x === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * x) / (Math.PI * x);
    const w = 0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (taps - 1)) + 0.08 * Math.cos((4 * Math.PI * i) / (taps - 1));
    h[i] = sinc * w;
    sum += h[i];
  }
  for (let i = 0; i < taps; i += 1) h[i] /= sum;
  return h;
}

export class Resampler {
  /** Input samples per output sample. */
  private readonly step: number;
  private readonly taps: Float32Array | null;
  /** The last TAPS-1 input samples (FIR history). */
  private readonly history: Float32Array;
  /** Position of the next output sample, in input samples, relative to `prev` (index -1). */
  private pos = 0;
  /** The last filtered input sample of the previous chunk (interpolation across chunks). */
  private prev = 0;

  constructor(
    readonly inRate: number,
    readonly outRate: number,
  ) {
    if (!(inRate > 0 && outRate > 0)) throw new RangeError("rates must be positive");
    this.step = inRate / outRate;
    this.taps = outRate < inRate ? lowPassTaps((0.45 * outRate) / inRate) : null;
    this.history = new Float32Array(this.taps ? this.taps.length - 1 : 0);
    this.pos = 1; // the first output sample is the first input sample
  }

  /** How many output samples `n` more input samples give at most (for sizing buffers). */
  maxOutput(n: number): number {
    return Math.ceil((n + 1) / this.step) + 1;
  }

  push(input: Float32Array): Float32Array {
    const x = this.taps ? this.filter(input) : input;
    const out = new Float32Array(this.maxOutput(x.length));
    let n = 0;
    let pos = this.pos;
    // Sample i of this chunk is at position i + 1 (position 0 is `prev`).
    while (pos <= x.length) {
      const i = Math.floor(pos);
      const frac = pos - i;
      const a = i === 0 ? this.prev : x[i - 1];
      const b = i < x.length ? x[i] : a;
      out[n++] = frac === 0 || i >= x.length ? a : a + (b - a) * frac;
      pos += this.step;
    }
    if (x.length > 0) this.prev = x[x.length - 1];
    this.pos = pos - x.length;
    return out.subarray(0, n);
  }

  private filter(input: Float32Array): Float32Array {
    const h = this.taps as Float32Array;
    const hist = this.history;
    const k = hist.length;
    const y = new Float32Array(input.length);
    for (let i = 0; i < input.length; i += 1) {
      let acc = 0;
      for (let j = 0; j < h.length; j += 1) {
        const idx = i - j; // input index of tap j
        acc += h[j] * (idx >= 0 ? input[idx] : hist[k + idx]);
      }
      y[i] = acc;
    }
    // Keep the last k inputs for the next chunk.
    if (input.length >= k) hist.set(input.subarray(input.length - k));
    else {
      hist.copyWithin(0, input.length);
      hist.set(input, k - input.length);
    }
    return y;
  }
}
