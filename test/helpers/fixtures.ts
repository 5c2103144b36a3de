// The architecture variants as test fixtures: a tiny HF checkpoint, its converted .lsw and the fp64 reference, built
// on first use inside a test file's temporary folder and kept for the rest of the file.
import * as path from 'node:path';
import { convertModel } from '../../src/core/convert.js';
import { makeTinyCheckpoint, type CheckpointInfo } from './checkpoint.js';
import { RefModel } from './reference.js';
import { VARIANTS } from './variants.js';

export interface VariantFixture {
  info: CheckpointInfo;
  ref: RefModel;
  lsw: string;
}

export function variantFixtures(tmp: string): (name: string) => Promise<VariantFixture> {
  const built = new Map<string, VariantFixture>();
  return async (name) => {
    let f = built.get(name);
    if (!f) {
      const v = VARIANTS.find((x) => x.name === name);
      if (!v) throw new Error(`no variant named ${name}`);
      const info = makeTinyCheckpoint(path.join(tmp, name), v.opts);
      const lsw = path.join(tmp, `${name}.lsw`);
      await convertModel(info.dir, lsw);
      f = { info, ref: RefModel.load(info.dir), lsw };
      built.set(name, f);
    }
    return f;
  };
}
