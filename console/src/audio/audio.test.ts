import { describe, expect, it } from "vitest";
import { Framer, floatToPcm16, meterLevel, pcm16ToFloat, rms, SampleFifo } from "./framing";
import { JitterBuffer, seqBefore } from "./jitter";
import { lowPassTaps, Resampler } from "./resample";

function sine(hz: number, rate: number, n: number, amp = 0.5, phase0 = 0): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i += 1) x[i] = amp * Math.sin((2 * Math.PI * hz * (i + phase0)) / rate);
  return x;
}

/** Frequency by counting zero crossings (enough for a clean tone). */
function zeroCrossingHz(x: Float32Array, rate: number): number {
  let n = 0;
  for (let i = 1; i < x.length; i += 1) if (x[i - 1] < 0 !== x[i] < 0) n += 1;
  return (n / 2) * (rate / x.length);
}

function resampleInChunks(r: Resampler, x: Float32Array, chunk: number): Float32Array {
  const parts: Float32Array[] = [];
  for (let i = 0; i < x.length; i += chunk) parts.push(r.push(x.subarray(i, i + chunk)));
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

describe("Resampler", () => {
  it("48 kHz to 16 kHz in render quanta keeps a tone's frequency, level and length", () => {
    const x = sine(1000, 48000, 48000);
    const y = resampleInChunks(new Resampler(48000, 16000), x, 128);
    expect(Math.abs(y.length - 16000)).toBeLessThanOrEqual(2);
    expect(zeroCrossingHz(y.subarray(100), 16000)).toBeCloseTo(1000, -1);
    expect(rms(y.subarray(100))).toBeCloseTo(0.5 / Math.SQRT2, 1);
  });

  it("chunking does not change the output (state carried across chunks)", () => {
    const x = sine(440, 44100, 4410);
    const whole = new Resampler(44100, 16000).push(x);
    const chunked = resampleInChunks(new Resampler(44100, 16000), x, 128);
    expect(chunked.length).toBe(whole.length);
    for (let i = 0; i < whole.length; i += 1) expect(chunked[i]).toBeCloseTo(whole[i], 5);
  });

  it("downsampling filters out what would alias (7 kHz at 48 kHz is gone at 8 kHz)", () => {
    const y = resampleInChunks(new Resampler(48000, 8000), sine(7000, 48000, 48000), 128);
    expect(rms(y.subarray(100))).toBeLessThan(0.02);
  });

  it("16 kHz to 48 kHz: a 600 Hz tone stays 600 Hz, smooth across chunk edges", () => {
    const y = resampleInChunks(new Resampler(16000, 48000), sine(600, 16000, 16000), 320);
    expect(Math.abs(y.length - 48000)).toBeLessThanOrEqual(3);
    expect(zeroCrossingHz(y, 48000)).toBeCloseTo(600, -1);
    let maxStep = 0;
    for (let i = 1; i < y.length; i += 1) maxStep = Math.max(maxStep, Math.abs(y[i] - y[i - 1]));
    expect(maxStep).toBeLessThan(0.5 * 2 * Math.PI * (600 / 48000) * 1.5);
  });

  it("low-pass taps have unity gain; bad rates are refused", () => {
    expect(lowPassTaps(0.1).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    expect(() => new Resampler(0, 16000)).toThrow(RangeError);
  });
});

describe("framing", () => {
  it("cuts any chunk sizes into whole 320-sample PCM16 frames", () => {
    const f = new Framer(320);
    const frames = [...f.push(new Float32Array(128).fill(0.5)), ...f.push(new Float32Array(600).fill(-0.25))];
    expect(frames.map((x) => x.length)).toEqual([320, 320]);
    expect(frames[0][0]).toBe(16384);
    expect(frames[1][319]).toBe(-8192);
    expect(f.push(new Float32Array(231))).toHaveLength(0); // 88 held + 231 = 319
    expect(f.push(new Float32Array(1))).toHaveLength(1);
  });

  it("PCM16 conversion clips and round-trips", () => {
    expect(Array.from(floatToPcm16(new Float32Array([2, -2, 0])))).toEqual([32767, -32768, 0]);
    expect(pcm16ToFloat(new Int16Array([-32768, 16384]))[1]).toBeCloseTo(0.5, 6);
  });

  it("meter: -60 dBFS and below is 0, full scale is 1", () => {
    expect(meterLevel(0)).toBe(0);
    expect(meterLevel(0.001)).toBe(0);
    expect(meterLevel(1)).toBe(1);
    expect(meterLevel(0.1)).toBeCloseTo(2 / 3, 5);
  });

  it("the FIFO grows as needed and keeps order", () => {
    const q = new SampleFifo(4);
    q.push(new Float32Array([1, 2, 3]));
    const out = new Float32Array(2);
    expect(q.pull(out)).toBe(2);
    q.push(new Float32Array([4, 5, 6, 7]));
    const rest = new Float32Array(10);
    expect(q.pull(rest)).toBe(5);
    expect(Array.from(rest.subarray(0, 5))).toEqual([3, 4, 5, 6, 7]);
  });
});

const frame = (v: number) => new Int16Array(4).fill(v);

describe("JitterBuffer", () => {
  it("waits for the target, then plays in order; an underrun waits again", () => {
    const j = new JitterBuffer(4, 3, 10);
    j.push(0, frame(1));
    j.push(1, frame(2));
    expect(j.pop()).toBeNull();
    j.push(2, frame(3));
    expect([j.pop(), j.pop(), j.pop()].map((f) => f?.[0])).toEqual([1, 2, 3]);
    expect(j.pop()).toBeNull();
    expect(j.stats.underruns).toBe(1);
    j.push(3, frame(4));
    expect(j.pop()).toBeNull(); // below target again
  });

  it("is bounded: a burst beyond max drops the oldest down to the target", () => {
    const j = new JitterBuffer(4, 3, 10);
    for (let s = 0; s < 11; s += 1) j.push(s, frame(s));
    expect(j.depth).toBe(3);
    expect(j.stats.overflowDropped).toBe(8);
    expect(j.pop()?.[0]).toBe(8);
  });

  it("drops late and duplicate frames; a short gap plays silence, a long one skips", () => {
    const j = new JitterBuffer(4, 1, 10);
    j.push(5, frame(5));
    expect(j.pop()?.[0]).toBe(5);
    j.push(5, frame(5));
    j.push(4, frame(4));
    expect(j.stats.late).toBe(2);
    j.push(7, frame(7));
    expect(j.pop()?.[0]).toBe(0); // 6 is missing: silence
    expect(j.pop()?.[0]).toBe(7);
    j.push(500, frame(9));
    expect(j.pop()?.[0]).toBe(9);
    expect(j.stats.concealed).toBe(1);
  });

  it("orders around the 2^32 wrap", () => {
    expect(seqBefore(0xffffffff, 0)).toBe(true);
    const j = new JitterBuffer(4, 2, 10);
    j.push(0, frame(2));
    j.push(0xffffffff, frame(1));
    expect([j.pop()?.[0], j.pop()?.[0]]).toEqual([1, 2]);
  });
});
