#!/usr/bin/env node
// npm run bundle: one ESM file dist/bundle/lora-switch.mjs with every dependency inlined, plus
//   koffi-linux-x64.node   koffi's prebuilt native module (loaded by the bundle instead of node_modules)
//   liblsw.so              the native engine, when built (build/native/liblsw.so)
//   package.json           oclif's config for the bundle (explicit command strategy)
// Run it on a machine without node_modules: `node dist/bundle/lora-switch.mjs --help`.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist', 'bundle');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const require = createRequire(import.meta.url);
fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(out, { recursive: true });

// koffi looks for its native module in @koromix/koffi-<platform>-<arch> (src/koffi/src/static.js);
// in the bundle it is a file next to lora-switch.mjs instead.
const koffiStatic = {
  name: 'koffi-static',
  setup(build) {
    build.onLoad({ filter: /koffi[\\/]src[\\/]koffi[\\/]src[\\/]static\.js$/ }, () => ({
      loader: 'js',
      contents: `import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
export function loadStatic(pkg) {
  try { return require('./koffi-' + pkg + '.node'); } catch { return null; }
}`,
    }));
  },
};

// ink imports react-devtools-core only when DEV=true; the bundle never does
const devtoolsStub = {
  name: 'devtools-stub',
  setup(build) {
    build.onResolve({ filter: /^react-devtools-core$/ }, () => ({ path: 'react-devtools-core', namespace: 'stub' }));
    build.onLoad({ filter: /.*/, namespace: 'stub' }, () => ({ loader: 'js', contents: 'export default { initialize() {}, connectToDevTools() {} };' }));
  },
};

await esbuild.build({
  entryPoints: [path.join(root, 'src', 'bundle-entry.ts')],
  outfile: path.join(out, 'lora-switch.mjs'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  jsx: 'automatic',
  minify: false,
  legalComments: 'none',
  logLevel: 'warning',
  plugins: [koffiStatic, devtoolsStub],
  define: { 'process.env.DEV': '"false"' },
  banner: {
    js: "#!/usr/bin/env node\nimport { createRequire as __lswCreateRequire } from 'node:module';\nconst require = __lswCreateRequire(import.meta.url);",
  },
});

const koffiPkg = path.dirname(require.resolve('@koromix/koffi-linux-x64/package.json', { paths: [path.join(root, 'node_modules', 'koffi')] }));
fs.copyFileSync(path.join(koffiPkg, 'linux_x64', 'koffi.node'), path.join(out, 'koffi-linux-x64.node'));
const lib = path.join(root, 'build', 'native', 'liblsw.so');
if (fs.existsSync(lib)) fs.copyFileSync(lib, path.join(out, 'liblsw.so'));
else console.warn(`note: ${lib} not built; the bundle will look for $LSW_NATIVE_LIB`);
fs.writeFileSync(
  path.join(out, 'package.json'),
  `${JSON.stringify({
    name: pkg.name,
    version: pkg.version,
    type: 'module',
    description: pkg.description,
    oclif: { bin: pkg.oclif.bin, dirname: pkg.oclif.dirname, topicSeparator: ' ', commands: { strategy: 'explicit', target: './lora-switch.mjs', identifier: 'COMMANDS' } },
  }, null, 2)}\n`,
);
fs.chmodSync(path.join(out, 'lora-switch.mjs'), 0o755);
const size = fs.statSync(path.join(out, 'lora-switch.mjs')).size;
console.log(`wrote ${path.relative(root, out)}/: lora-switch.mjs (${(size / 1048576).toFixed(1)} MiB), koffi-linux-x64.node${fs.existsSync(path.join(out, 'liblsw.so')) ? ', liblsw.so' : ''}, package.json`);
