// The AudioWorklet processors (loaded by audio.ts with audioWorklet.addModule; bundled by Vite
// as a worker, so it imports the sans-I/O parts). They run on the audio thread:
// - "dg-mic": the microphone's samples, resampled to the protocol's rate and cut into 20 ms
//   PCM16 frames, posted to the page (which packs and sends them), with the level;
// - "dg-speaker": frames posted by the page go through the jitter buffer, are resampled to the
//   context's rate and played; the level of what plays is posted back.
import { Framer, pcm16ToFloat, rms, SampleFifo } from "./framing";
import { JitterBuffer } from "./jitter";
import { Resampler } from "./resample";

// The AudioWorkletGlobalScope (not in TypeScript's DOM lib).
declare const sampleRate: number;
declare function registerProcessor(name: string, ctor: unknown): void;
declare class AudioWorkletProcessor {
  readonly port: MessagePort;
  constructor(options?: unknown);
}

export interface MicOptions {
  rate: number;
  frameSize: number;
}

export interface SpeakerOptions extends MicOptions {
  target: number;
  max: number;
}

/** How often (in render quanta of 128 samples) a processor posts its level: about 20 a second. */
const LEVEL_EVERY = Math.max(1, Math.round(sampleRate / 128 / 20));

class LevelTap {
  private sum = 0;
  private n = 0;
  private quanta = 0;

  constructor(private readonly port: MessagePort) {}

  add(x: Float32Array): void {
    const r = rms(x);
    this.sum += r * r * x.length;
    this.n += x.length;
    this.quanta += 1;
    if (this.quanta >= LEVEL_EVERY) {
      this.port.postMessage({ type: "level", rms: this.n ? Math.sqrt(this.sum / this.n) : 0 });
      this.sum = this.n = this.quanta = 0;
    }
  }
}

class MicProcessor extends AudioWorkletProcessor {
  private readonly resampler: Resampler;
  private readonly framer: Framer;
  private readonly level: LevelTap;
  private stopped = false;

  constructor(options: { processorOptions: MicOptions }) {
    super(options);
    const o = options.processorOptions;
    this.resampler = new Resampler(sampleRate, o.rate);
    this.framer = new Framer(o.frameSize);
    this.level = new LevelTap(this.port);
    this.port.onmessage = (m: MessageEvent) => {
      if (m.data?.type === "stop") this.stopped = true;
    };
  }

  process(inputs: Float32Array[][]): boolean {
    if (this.stopped) return false;
    const chans = inputs[0];
    if (!chans || chans.length === 0) return true;
    let mono = chans[0];
    if (chans.length > 1) {
      mono = new Float32Array(chans[0].length);
      for (const c of chans) for (let i = 0; i < c.length; i += 1) mono[i] += c[i] / chans.length;
    }
    this.level.add(mono);
    for (const frame of this.framer.push(this.resampler.push(mono))) {
      this.port.postMessage({ type: "frame", samples: frame }, [frame.buffer]);
    }
    return true;
  }
}

class SpeakerProcessor extends AudioWorkletProcessor {
  private readonly jitter: JitterBuffer;
  private readonly resampler: Resampler;
  private readonly fifo: SampleFifo;
  private readonly level: LevelTap;
  private stopped = false;
  private quanta = 0;

  constructor(options: { processorOptions: SpeakerOptions }) {
    super(options);
    const o = options.processorOptions;
    this.jitter = new JitterBuffer(o.frameSize, o.target, o.max);
    this.resampler = new Resampler(o.rate, sampleRate);
    this.fifo = new SampleFifo(4096);
    this.level = new LevelTap(this.port);
    this.port.onmessage = (m: MessageEvent) => {
      const d = m.data as { type: string; seq?: number; samples?: Int16Array };
      if (d.type === "frame" && d.samples) this.jitter.push(d.seq ?? 0, d.samples);
      else if (d.type === "stop") this.stopped = true;
    };
  }

  process(_inputs: Float32Array[][], outputs: Float32Array[][]): boolean {
    if (this.stopped) return false;
    const out = outputs[0];
    const first = out[0];
    while (this.fifo.length < first.length) {
      const frame = this.jitter.pop();
      if (frame === null) break;
      this.fifo.push(this.resampler.push(pcm16ToFloat(frame)));
    }
    const got = this.fifo.pull(first);
    first.fill(0, got);
    for (let c = 1; c < out.length; c += 1) out[c].set(first);
    this.level.add(first);
    this.quanta += 1;
    if (this.quanta % (LEVEL_EVERY * 20) === 0) this.port.postMessage({ type: "stats", stats: { ...this.jitter.stats, depth: this.jitter.depth } });
    return true;
  }
}

registerProcessor("dg-mic", MicProcessor);
registerProcessor("dg-speaker", SpeakerProcessor);
