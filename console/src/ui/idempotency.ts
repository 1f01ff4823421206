/** A fresh idempotency key for a command that starts work (docs/protocol.md, "Idempotency"). */
export function newKey(): string {
  return globalThis.crypto?.randomUUID?.() ?? `k-${Date.now()}-${Math.random().toString(36).slice(2)}`;
}
