import { defineConfig } from "vite";

// Built into the Python package's static folder; the API serves it at /desk (no CDN at run time).
export default defineConfig({
  base: "/desk/",
  build: {
    outDir: "../app/static/desk",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    target: "es2022",
  },
});
