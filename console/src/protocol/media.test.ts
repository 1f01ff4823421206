import { describe, expect, it } from "vitest";
import { FrameCounter, MediaFrameError, packFrame, samplesPerFrame, unpackFrame } from "./media";

describe("media frames", () => {
  it("packs the header big-endian and the samples little-endian, and back", () => {
    const samples = Int16Array.from([1, -2, 32767, -32768]);
    const buf = packFrame({ channel: 0x0102, seq: 0x03040506, timestamp: 0x0708090a, samples });
    expect([...new Uint8Array(buf)]).toEqual([
      1, 1, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
      0x01, 0x00, 0xfe, 0xff, 0xff, 0x7f, 0x00, 0x80,
    ]);
    const back = unpackFrame(buf);
    expect(back).toMatchObject({ channel: 0x0102, seq: 0x03040506, timestamp: 0x0708090a });
    expect([...back.samples]).toEqual([...samples]);
  });

  it("refuses what the gateway refuses, with the same reasons", () => {
    const ok = new Uint8Array(packFrame({ channel: 1, seq: 0, timestamp: 0, samples: new Int16Array(2) }));
    const bad = (f: (b: Uint8Array) => Uint8Array) => () => unpackFrame(f(ok.slice()).buffer as ArrayBuffer);
    expect(bad((b) => b.slice(0, 11))).toThrow(new MediaFrameError("short"));
    expect(bad((b) => ((b[0] = 2), b))).toThrow(new MediaFrameError("unknown-version"));
    expect(bad((b) => ((b[1] = 9), b))).toThrow(new MediaFrameError("unknown-kind"));
    expect(bad((b) => b.slice(0, 15))).toThrow(new MediaFrameError("odd-payload"));
  });

  it("counts sequence and timestamp per frame, wrapping at 2^32", () => {
    expect(samplesPerFrame(16000)).toBe(320);
    expect(samplesPerFrame(8000)).toBe(160);
    const c = new FrameCounter(320);
    expect([c.next(), c.next()]).toEqual([{ seq: 0, timestamp: 0 }, { seq: 1, timestamp: 320 }]);
  });
});
