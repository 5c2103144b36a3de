#!/usr/bin/env node
// Builds the native engine (cuda/) with CMake into build/native (liblsw.so) and build/native-cmake (objects, ctest).
// The CPU backend is always built; the CUDA backend where nvcc is found (CMake decides).
// Runs as the root package's postinstall; `--force` reconfigures from scratch. LSW_SKIP_NATIVE=1 skips.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const src = path.join(root, 'cuda');
const buildDir = path.join(root, 'build', 'native-cmake');
const libDir = path.join(root, 'build', 'native');
const force = process.argv.includes('--force');

function fail(msg) {
  console.error(`lora-switch: ${msg}`);
  process.exit(1);
}

if (process.env.LSW_SKIP_NATIVE === '1') {
  console.log('lora-switch: LSW_SKIP_NATIVE=1, not building the native engine');
  process.exit(0);
}
if (!fs.existsSync(path.join(src, 'CMakeLists.txt'))) fail(`${path.join(src, 'CMakeLists.txt')}: missing; cannot build the native engine`);

const has = (cmd, args = ['--version']) => {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return !r.error && r.status === 0;
};
if (!has('cmake')) {
  fail('cmake not found: the native engine needs CMake >= 3.18 and a C++17 compiler (Debian/Ubuntu: apt-get install cmake g++), then run `npm run build:native`');
}
if (!has('c++') && !has('g++') && !has('clang++') && !process.env.CXX) {
  fail('no C++ compiler found (c++, g++ or clang++): install one (Debian/Ubuntu: apt-get install g++), then run `npm run build:native`');
}

const env = { ...process.env };
// nvcc outside PATH in its usual place: let CMake find it
if (!env.CUDACXX && !has('nvcc') && fs.existsSync('/usr/local/cuda/bin/nvcc')) env.CUDACXX = '/usr/local/cuda/bin/nvcc';

if (force) fs.rmSync(buildDir, { recursive: true, force: true });
const run = (args) => {
  console.log(`$ cmake ${args.join(' ')}`);
  const r = spawnSync('cmake', args, { stdio: 'inherit', env });
  if (r.error) fail(`cmake failed to start (${r.error.message})`);
  if (r.status !== 0) fail(`native build failed (cmake ${args[0]} exited ${r.status}); see the output above`);
};
if (!fs.existsSync(path.join(buildDir, 'CMakeCache.txt'))) {
  run(['-S', src, '-B', buildDir, '-DCMAKE_BUILD_TYPE=Release', `-DCMAKE_LIBRARY_OUTPUT_DIRECTORY=${libDir}`]);
}
const jobs = Math.max(1, Number(process.env.LSW_BUILD_JOBS) || Math.min(os.availableParallelism?.() ?? os.cpus().length, 8));
run(['--build', buildDir, '--parallel', String(jobs)]);
const lib = path.join(libDir, process.platform === 'darwin' ? 'liblsw.dylib' : 'liblsw.so');
if (!fs.existsSync(lib)) fail(`${lib}: not produced by the build`);
console.log(`lora-switch: native engine built: ${lib}`);
