// Runs many scenarios through the cr-sqlite reference in one Node process (loading the wasm
// engine once instead of once per scenario).
// Usage: node batch.mjs ORACLE_DIR SCENARIO.json... ; writes SCENARIO.oracle.json beside each.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [oracleDir, ...files] = process.argv.slice(2);
const { runWorkload } = await import(pathToFileURL(path.join(oracleDir, 'oracle.mjs')).href);
for (const file of files) {
  const out = await runWorkload(JSON.parse(readFileSync(file, 'utf8')));
  writeFileSync(file.replace(/\.json$/, '.oracle.json'), JSON.stringify(out) + '\n');
}
