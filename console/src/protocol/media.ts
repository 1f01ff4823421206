// Binary media frames (docs/protocol.md, "Binary media frames"): a 12-byte big-endian header
// (version 1, kind 1 = audio, channel, sequence, timestamp in samples), then PCM16LE mono
// samples, 20 ms a frame. Sans-I/O: pack and unpack, tested in media.test.ts; the audio views
// (microphone, speaker, push-to-talk) build on these and ConsoleClient.sendBinary / `binary`.
import { MEDIA_HEADER_BYTES } from "./generated";

export const MEDIA_VERSION = 1;
export const KIND_AUDIO = 1;
export const FRAME_MS = 20;

export interface MediaFrame {
  channel: number;
  seq: number;
  timestamp: number;
  /** PCM16 samples (host order: the codec does the little-endian part). */
  samples: Int16Array;
}

export class MediaFrameError extends Error {
  constructor(readonly why: "short" | "unknown-version" | "unknown-kind" | "odd-payload") {
    super(`bad media frame: ${why}`);
    this.name = "MediaFrameError";
  }
}

export function samplesPerFrame(rate: number): number {
  return (rate * FRAME_MS) / 1000;
}

export function packFrame(f: MediaFrame): ArrayBuffer {
  const buf = new ArrayBuffer(MEDIA_HEADER_BYTES + f.samples.length * 2);
  const view = new DataView(buf);
  view.setUint8(0, MEDIA_VERSION);
  view.setUint8(1, KIND_AUDIO);
  view.setUint16(2, f.channel);
  view.setUint32(4, f.seq >>> 0);
  view.setUint32(8, f.timestamp >>> 0);
  for (let i = 0; i < f.samples.length; i += 1) view.setInt16(MEDIA_HEADER_BYTES + i * 2, f.samples[i], true);
  return buf;
}

export function unpackFrame(buf: ArrayBuffer): MediaFrame {
  if (buf.byteLength < MEDIA_HEADER_BYTES) throw new MediaFrameError("short");
  const view = new DataView(buf);
  if (view.getUint8(0) !== MEDIA_VERSION) throw new MediaFrameError("unknown-version");
  if (view.getUint8(1) !== KIND_AUDIO) throw new MediaFrameError("unknown-kind");
  const payload = buf.byteLength - MEDIA_HEADER_BYTES;
  if (payload % 2 !== 0) throw new MediaFrameError("odd-payload");
  const samples = new Int16Array(payload / 2);
  for (let i = 0; i < samples.length; i += 1) samples[i] = view.getInt16(MEDIA_HEADER_BYTES + i * 2, true);
  return { channel: view.getUint16(2), seq: view.getUint32(4), timestamp: view.getUint32(8), samples };
}

/** Sequence and timestamp of the frames one sender sends on a channel (both wrap at 2^32). */
export class FrameCounter {
  private seq = 0;
  private ts = 0;

  constructor(private readonly perFrame: number) {}

  next(): { seq: number; timestamp: number } {
    const out = { seq: this.seq, timestamp: this.ts };
    this.seq = (this.seq + 1) >>> 0;
    this.ts = (this.ts + this.perFrame) >>> 0;
    return out;
  }
}
