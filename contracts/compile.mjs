// Compile contracts/src with the pinned solcjs (npm `solc`) and write one artifact per contract.
//
//   node compile.mjs [--out DIR]     every src/**/*.sol -> DIR/<ContractName>.json (default: out/)
//   node compile.mjs --standard-json solc's own contract: standard JSON on stdin, standard JSON on
//                                     stdout (for tools that want a `solc` binary, e.g. forge)
//
// Why a script and not the solcjs CLI: the CLI rejects --allow-paths, prints a `>>>` line before
// its JSON and can cut piped output at 64 KiB. Here imports resolve through a callback
// (`@openzeppelin/...` from node_modules, everything else relative to contracts/) and output is
// written with fs.writeSync until every byte is out.
//
// Normally run through `python -m services.chain.artifacts build`, which runs `npm ci` first and
// rebuilds only when the sources, this script or the lock file changed.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const solc = require("solc");

const ROOT = path.dirname(fileURLToPath(import.meta.url));
const SRC = path.join(ROOT, "src");
const NODE_MODULES = path.join(ROOT, "node_modules");

// One set of compiler settings for every contract; artifacts record them.
const SETTINGS = {
  evmVersion: "cancun",
  optimizer: { enabled: true, runs: 200 },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

function findImports(importPath) {
  // Source unit names are paths relative to contracts/ ("src/...") or package paths ("@scope/...").
  const base = importPath.startsWith("@") ? NODE_MODULES : ROOT;
  const file = path.resolve(base, importPath);
  if (!file.startsWith(base + path.sep)) return { error: `import outside ${base}: ${importPath}` };
  try {
    return { contents: fs.readFileSync(file, "utf8") };
  } catch (err) {
    return { error: `cannot read ${importPath}: ${err.message}` };
  }
}

function compile(input) {
  return JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
}

function writeAll(fd, text) {
  // A pipe may take fewer bytes than offered (or none, EAGAIN, when non-blocking): keep going.
  const buffer = Buffer.from(text, "utf8");
  let offset = 0;
  while (offset < buffer.length) {
    try {
      offset += fs.writeSync(fd, buffer, offset, buffer.length - offset);
    } catch (err) {
      if (err.code !== "EAGAIN") throw err;
    }
  }
}

function solFiles(dir) {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .flatMap((entry) => {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) return solFiles(full);
      return entry.name.endsWith(".sol") ? [full] : [];
    });
}

function build(outDir) {
  const sources = {};
  for (const file of solFiles(SRC)) {
    const unit = path.relative(ROOT, file).split(path.sep).join("/");
    sources[unit] = { content: fs.readFileSync(file, "utf8") };
  }
  const output = compile({ language: "Solidity", sources, settings: SETTINGS });

  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const message of output.errors || []) process.stderr.write(message.formattedMessage + "\n");
  if (errors.length > 0) {
    process.stderr.write(`solc ${solc.version()}: ${errors.length} error(s)\n`);
    process.exit(1);
  }

  // Only our own contracts get artifacts (not the OpenZeppelin units they import).
  const artifacts = new Map();
  for (const unit of Object.keys(sources)) {
    for (const [name, contract] of Object.entries(output.contracts[unit] || {})) {
      if (artifacts.has(name)) {
        process.stderr.write(`two contracts named ${name}: ${artifacts.get(name).sourceName} and ${unit}\n`);
        process.exit(1);
      }
      artifacts.set(name, {
        contractName: name,
        sourceName: unit,
        abi: contract.abi,
        bytecode: "0x" + contract.evm.bytecode.object,
        deployedBytecode: "0x" + contract.evm.deployedBytecode.object,
        compiler: { version: solc.version(), settings: { evmVersion: SETTINGS.evmVersion, optimizer: SETTINGS.optimizer } },
      });
    }
  }

  fs.mkdirSync(outDir, { recursive: true });
  for (const stale of fs.readdirSync(outDir)) {
    if (stale.endsWith(".json") && !artifacts.has(stale.slice(0, -5))) fs.rmSync(path.join(outDir, stale));
  }
  for (const [name, artifact] of artifacts) {
    // Written beside, then renamed: a reader never sees half a file.
    const target = path.join(outDir, `${name}.json`);
    const fd = fs.openSync(target + ".tmp", "w");
    writeAll(fd, JSON.stringify(artifact, null, 2) + "\n");
    fs.closeSync(fd);
    fs.renameSync(target + ".tmp", target);
  }
  process.stderr.write(`solc ${solc.version()}: ${artifacts.size} artifact(s) in ${outDir}\n`);
}

const args = process.argv.slice(2);
if (args.includes("--standard-json")) {
  const input = JSON.parse(fs.readFileSync(0, "utf8"));
  writeAll(1, JSON.stringify(compile(input)));
} else {
  const at = args.indexOf("--out");
  build(at >= 0 ? path.resolve(args[at + 1]) : path.join(ROOT, "out"));
}
