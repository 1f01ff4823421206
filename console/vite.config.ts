import { defineConfig } from "vitest/config";

// The console is served by the gateway at /console/ (gateway/console_page.py reads dist/).
// Everything is bundled: no CDN, no font or icon fetched from elsewhere, no inline asset
// (the page's Content-Security-Policy allows scripts and styles from its own origin only).
export default defineConfig({
  base: "/console/",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    target: "es2022",
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
