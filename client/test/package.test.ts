// The published package, as consumers load it: `npm run build`, then require() it from a
// CommonJS file, import it from an ES module, and type-check a CommonJS (.cts) and an ES
// module (.mts) consumer with module node16 and nodenext. The fixtures in test/package
// resolve "@encore-realtime/client" through the package's own "exports" (self-reference).
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("..", import.meta.url));
const fixtures = root + "test/package/";

/** run runs a command in the package root and returns its output; a failure shows it all. */
function run(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { cwd: root, encoding: "utf8", stdio: "pipe", timeout: 120_000 });
  } catch (err: any) {
    throw new Error(`${cmd} ${args.join(" ")} failed:\n${err.stdout ?? ""}${err.stderr ?? ""}`);
  }
}

describe("the built package", () => {
  beforeAll(() => {
    run("npm", ["run", "--silent", "build"]);
  }, 120_000);

  it("has a file for every condition of every entry point", () => {
    const pkg = JSON.parse(readFileSync(root + "package.json", "utf8"));
    const files: string[] = [pkg.main, pkg.module, pkg.types];
    for (const entry of [".", "./react"]) {
      for (const cond of ["import", "require"]) {
        const target = pkg.exports[entry][cond];
        expect(Object.keys(target), `${entry} ${cond}`).toEqual(["types", "default"]); // types first
        files.push(target.types, target.default);
      }
    }
    for (const f of files) expect(existsSync(root + f), f).toBe(true);
    expect(JSON.parse(readFileSync(root + "dist/cjs/package.json", "utf8"))).toEqual({ type: "commonjs" });
  });

  it("require()s from a CommonJS file", () => {
    expect(run(process.execPath, [fixtures + "consumer.cjs"])).toContain("cjs consumer: ok");
  });

  it("imports from an ES module", () => {
    const script = `
      const rt = await import("@encore-realtime/client");
      const react = await import("@encore-realtime/client/react");
      if (react.RealtimeClient !== rt.RealtimeClient || rt.actionFor(4300) !== "use-poll") process.exit(1);
      console.log("esm consumer: ok");`;
    expect(run(process.execPath, ["--input-type=module", "-e", script])).toContain("esm consumer: ok");
  });

  for (const mod of ["node16", "nodenext"]) {
    it(`type-checks a CommonJS (.cts) and an ES module (.mts) consumer with module ${mod}`, () => {
      run(root + "node_modules/.bin/tsc", ["-p", fixtures + "tsconfig.json", "--module", mod, "--moduleResolution", mod]);
    });
  }
});
