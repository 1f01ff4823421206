// A level meter for a microphone or a speaker (AudioHandle.level, 0..1 = -60..0 dBFS).
import type { ReadonlySignal } from "@preact/signals";

export function LevelMeter({ level, label, id }: { level: ReadonlySignal<number>; label: string; id?: string }) {
  const v = Math.round(level.value * 100) / 100;
  return <meter id={id} class="level-meter" min={0} max={1} low={0.7} high={0.9} optimum={0.5} value={v} aria-label={label} data-level={v} />;
}
