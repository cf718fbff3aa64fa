// `npm run check` (after `npm run build`): fails when the committed src/gen or dist differ from what the
// build just produced, so the gateway never embeds stale assets.
import { execFileSync, spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const paths = ["src/gen", "dist"];

const diff = spawnSync("git", ["diff", "--exit-code", "--stat", "--", ...paths], { cwd: root, stdio: "inherit" });
// `git diff` does not see new files: list untracked ones too.
const untracked = execFileSync("git", ["ls-files", "--others", "--exclude-standard", "--", ...paths], {
  cwd: root,
  encoding: "utf8",
}).trim();
if (untracked) console.error(`untracked:\n${untracked}`);

if (diff.status !== 0 || untracked) {
  console.error(
    "\nThe dashboard's generated code or built assets are stale (src/gen or dist differ from the build)." +
      "\nRun `npm run build` in services/gateway/dashboard and commit src/gen and dist.",
  );
  process.exit(1);
}
console.log("dashboard: src/gen and dist are up to date");
