// Builds cmd/realtimed once for all browser test files (unless $REALTIMED_BIN is set)
// and removes the binary afterwards.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export default function setup(): () => void {
  if (process.env.REALTIMED_BIN) return () => {};
  const dir = mkdtempSync(join(tmpdir(), "realtimed-bin-"));
  const bin = join(dir, "realtimed");
  const root = resolve(import.meta.dirname, "..", "..");
  const started = Date.now();
  execFileSync("go", ["build", "-o", bin, "./cmd/realtimed"], { cwd: root, stdio: "inherit", timeout: 600_000 });
  console.log(`built realtimed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  process.env.REALTIMED_BIN = bin;
  return () => rmSync(dir, { recursive: true, force: true });
}
