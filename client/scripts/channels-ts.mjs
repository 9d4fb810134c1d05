#!/usr/bin/env node
// channels-ts writes the TypeScript module of a set of typed channel families from
// their schema bundle (the JSON that encore.app/realtime/typed writes, e.g.
// realtime/channels/channels.schema.json): one interface per payload type, compiled
// from its JSON Schema by json-schema-to-typescript, the union ChannelPayload, and one
// helper per family that returns a TypedChannel of its payload type.
//
//   node client/scripts/channels-ts.mjs <bundle.json> <out.ts> [--import <module>] [--source <name>]
//
// --import is the module the helpers import typedChannel from (default
// "@encore-realtime/client"); --source names the bundle in the header (default its path).
// Run by go generate (realtime/channels/channels.go); the output is committed.
import { readFileSync, writeFileSync } from "node:fs";
import { compile } from "json-schema-to-typescript";

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  if (i < 0) return def;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
};
const importFrom = opt("--import", "@encore-realtime/client");
const source = opt("--source", null);
if (args.length !== 2) {
  console.error("usage: channels-ts.mjs <bundle.json> <out.ts> [--import <module>] [--source <name>]");
  process.exit(2);
}
const [bundlePath, outPath] = args;
const bundle = JSON.parse(readFileSync(bundlePath, "utf8"));

// Words a parameter may not be called in TypeScript; such a parameter gets a "_".
const RESERVED = new Set(
  ("break case catch class const continue debugger default delete do else enum export extends false finally for " +
    "function if import in instanceof new null return super switch this throw true try typeof var void while with " +
    "implements interface let package private protected public static yield await").split(" "),
);
const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

const defs = structuredClone(bundle.$defs ?? {});
for (const [name, def] of Object.entries(defs)) def.title = name; // the interface's name is the Go type's
const payloads = [...new Set(bundle.families.map((f) => f.payload))];
const root = {
  title: "ChannelPayload",
  description: "ChannelPayload is the payload of any typed channel.",
  ...(payloads.length ? { anyOf: payloads.map((p) => ({ $ref: `#/$defs/${p}` })) } : { tsType: "never" }),
  $defs: defs,
};
const types = await compile(root, "ChannelPayload", {
  bannerComment: "",
  additionalProperties: false,
  strictIndexSignatures: true,
  format: true,
  style: { printWidth: 100 },
});

const doc = (lines) => ["/**", ...lines.map((l) => ` * ${l}`.trimEnd()), " */"].join("\n");
const helpers = bundle.families.map((f) => {
  if (!IDENT.test(f.name) || RESERVED.has(f.name)) throw new Error(`family name ${f.name} is not a TypeScript identifier`);
  const params = f.params.map((p) => (RESERVED.has(p) ? `${p}_` : p));
  const comment = doc([`\`${f.pattern}\`: events carry {@link ${f.payload}} (Go: ${f.goType}).`]);
  const pattern = JSON.stringify(f.pattern);
  if (params.length === 0) {
    return `${comment}\nexport const ${f.name}: TypedChannel<${f.payload}> = typedChannel<${f.payload}>(${pattern}, []);`;
  }
  const sig = params.map((p) => `${p}: string`).join(", ");
  return `${comment}\nexport function ${f.name}(${sig}): TypedChannel<${f.payload}> {\n  return typedChannel<${f.payload}>(${pattern}, [${params.join(", ")}]);\n}`;
});

const out = [
  `// Code generated from ${source ?? bundlePath} by client/scripts/channels-ts.mjs (go generate); DO NOT EDIT.`,
  `// The channel families declared in Go (encore.app/realtime/typed) and their payload types.`,
  `import { typedChannel, type TypedChannel } from ${JSON.stringify(importFrom)};`,
  "",
  types.trimEnd(),
  "",
  helpers.join("\n\n"),
  "",
].join("\n");
writeFileSync(outPath, out);
