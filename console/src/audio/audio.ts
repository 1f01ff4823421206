// Microphone and speaker in the browser for the media channels of docs/protocol.md (a call's
// media.open / call.listen, a console conference member, a live broadcast): one AudioContext for
// the console, the AudioWorklet processors of worklet.ts, the frames packed and unpacked with
// protocol/media.ts and carried by the signed-in connection.
//   const mic = await openMic(channel);       // channel: what media.open answered
//   mic.level.value; mic.muted.value = true;  mic.stop();
//   const spk = await openSpeaker(channel);   spk.level.value;  spk.stop();
import { signal, type ReadonlySignal, type Signal } from "@preact/signals";
import { FrameCounter, packFrame, unpackFrame, MediaFrameError } from "../protocol/media";
import { onBinary, sendBinary } from "../state/connection";
import { meterLevel } from "./framing";
import workletUrl from "./worklet.ts?worker&url";

/** What media.open (or conference.add {console: true}'s `media`) answered. */
export interface MediaChannel {
  channel: number;
  rate: number;
  samples_per_frame: number;
}

export interface AudioHandle {
  stop(): void;
  /** 0..1 (-60..0 dBFS), about 20 updates a second. */
  level: ReadonlySignal<number>;
}

export interface MicHandle extends AudioHandle {
  /** While true, silence is sent in place of the microphone (the stream keeps its timing). */
  muted: Signal<boolean>;
  /** Frames sent so far. */
  sent: ReadonlySignal<number>;
}

export interface SpeakerHandle extends AudioHandle {
  analyser: AnalyserNode;
}

/** Playout: start after 3 frames (60 ms), never hold more than 10 (200 ms). */
export const JITTER_TARGET = 3;
export const JITTER_MAX = 10;

let context: AudioContext | null = null;
let ready: Promise<AudioContext> | null = null;

/** The console's AudioContext with the processors loaded (created on first use; call it from a
 * click so that the browser lets it run). */
export function audioContext(): Promise<AudioContext> {
  if (ready === null) {
    const ctx = new AudioContext({ latencyHint: "interactive" });
    context = ctx;
    ready = ctx.audioWorklet.addModule(workletUrl).then(() => ctx);
    ready.catch(() => {
      ready = null;
      context = null;
    });
  }
  const r = ready;
  void context?.resume();
  return r;
}

/** The microphone into `ch`: PCM16 frames at the channel's rate. */
export async function openMic(ch: MediaChannel): Promise<MicHandle> {
  const ctx = await audioContext();
  // Echo cancellation for a console on loudspeakers; no noise suppression or gain control: they
  // would flatten a siren or an alarm behind the caller that the dispatcher must hear.
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
  });
  const source = ctx.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(ctx, "dg-mic", {
    numberOfInputs: 1,
    numberOfOutputs: 1,
    processorOptions: { rate: ch.rate, frameSize: ch.samples_per_frame },
  });
  // Rendered only when pulled by the destination: through a silent gain.
  const sink = ctx.createGain();
  sink.gain.value = 0;
  source.connect(node).connect(sink).connect(ctx.destination);
  const level = signal(0);
  const muted = signal(false);
  const sent = signal(0);
  const counter = new FrameCounter(ch.samples_per_frame);
  node.port.onmessage = (m: MessageEvent) => {
    const d = m.data as { type: string; samples?: Int16Array; rms?: number };
    if (d.type === "level") level.value = muted.value ? 0 : meterLevel(d.rms ?? 0);
    else if (d.type === "frame" && d.samples) {
      const samples = muted.value ? new Int16Array(d.samples.length) : d.samples;
      if (sendBinary(packFrame({ channel: ch.channel, ...counter.next(), samples }))) sent.value += 1;
    }
  };
  let stopped = false;
  return {
    level,
    muted,
    sent,
    stop() {
      if (stopped) return;
      stopped = true;
      node.port.postMessage({ type: "stop" });
      node.port.onmessage = null;
      source.disconnect();
      node.disconnect();
      sink.disconnect();
      for (const track of stream.getTracks()) track.stop();
      level.value = 0;
    },
  };
}

const speakers = new Set<SpeakerHandle>();

/** The frames arriving on `ch` played on the default output, through an AnalyserNode. */
export async function openSpeaker(ch: MediaChannel): Promise<SpeakerHandle> {
  const ctx = await audioContext();
  const node = new AudioWorkletNode(ctx, "dg-speaker", {
    numberOfInputs: 0,
    numberOfOutputs: 1,
    outputChannelCount: [1],
    processorOptions: { rate: ch.rate, frameSize: ch.samples_per_frame, target: JITTER_TARGET, max: JITTER_MAX },
  });
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  node.connect(analyser).connect(ctx.destination);
  const level = signal(0);
  node.port.onmessage = (m: MessageEvent) => {
    const d = m.data as { type: string; rms?: number };
    if (d.type === "level") level.value = meterLevel(d.rms ?? 0);
  };
  const off = onBinary((buf) => {
    let f;
    try {
      f = unpackFrame(buf);
    } catch (e) {
      if (e instanceof MediaFrameError) return; // the gateway never sends one; drop it
      throw e;
    }
    if (f.channel !== ch.channel) return;
    node.port.postMessage({ type: "frame", seq: f.seq, samples: f.samples }, [f.samples.buffer]);
  });
  let stopped = false;
  const handle: SpeakerHandle = {
    level,
    analyser,
    stop() {
      if (stopped) return;
      stopped = true;
      off();
      speakers.delete(handle);
      node.port.postMessage({ type: "stop" });
      node.port.onmessage = null;
      node.disconnect();
      analyser.disconnect();
      level.value = 0;
    },
  };
  speakers.add(handle);
  return handle;
}

/** The strongest frequency an analyser hears now, and its level (dBFS); null when silent. */
export function peakFrequency(analyser: AnalyserNode): { hz: number; db: number } | null {
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  let best = -1;
  for (let i = 1; i < bins.length; i += 1) if (best < 0 || bins[i] > bins[best]) best = i;
  if (best < 0 || !Number.isFinite(bins[best]) || bins[best] < -90) return null;
  return { hz: (best * analyser.context.sampleRate) / analyser.fftSize, db: bins[best] };
}

// A probe for tests and diagnostics (read only): what the open speakers play now.
(globalThis as { dispatchAudio?: unknown }).dispatchAudio = {
  speakers: () => speakers.size,
  speakerPeak: () => {
    for (const s of speakers) {
      const p = peakFrequency(s.analyser);
      if (p) return p;
    }
    return null;
  },
};
