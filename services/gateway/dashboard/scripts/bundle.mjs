// `npm run bundle`: src/main.ts -> dist/app.js (one ES module), plus src/index.html and src/style.css.
// No source maps, timestamps or absolute paths in the output, so the same sources give the same bytes.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });

await build({
  absWorkingDir: root,
  entryPoints: ["src/main.ts"],
  outfile: "dist/app.js",
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022", "chrome109", "firefox115", "safari16"],
  minify: true,
  legalComments: "eof",
  sourcemap: false,
  logLevel: "warning",
});

for (const file of ["index.html", "style.css"]) copyFileSync(join(root, "src", file), join(dist, file));

for (const file of ["index.html", "app.js", "style.css"]) {
  console.log(`dist/${file}  ${statSync(join(dist, file)).size} bytes`);
}
