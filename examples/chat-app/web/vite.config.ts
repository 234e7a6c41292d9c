// The page is built into the app's package (chat_app/static), which FastAPI serves under /static.
import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

export default defineConfig({
  plugins: [react()],
  base: "/static/",
  build: {
    outDir: "../chat_app/static",
    emptyOutDir: true,
    // no inline scripts or data: modules: the page's CSP allows only 'self'
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
  test: { environment: "jsdom", globals: true },
});
