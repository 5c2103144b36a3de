import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { f32BitsToF16, f16BitsToF32, f32BitsToBf16, convertFloats } from '../../src/core/dtype.js';

const f = new Float32Array(1);
const u = new Uint32Array(f.buffer);
const bits = (x: number) => ((f[0] = x), u[0]);

test('f16 -> f32 -> f16 is the identity on all non-NaN halves', () => {
  for (let h = 0; h < 65536; h++) {
    const x = f16BitsToF32(h);
    if (Number.isNaN(x)) {
      assert.ok(Number.isNaN(f16BitsToF32(f32BitsToF16(bits(x)))));
      continue;
    }
    assert.is(f32BitsToF16(bits(x)), h, `half 0x${h.toString(16)}`);
  }
});

test('f32 -> f16 rounds to nearest, ties to even (checked against exact neighbours)', () => {
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let i = 0; i < 20000; i++) {
    const x = Math.fround((rand() - 0.5) * 2 ** Math.floor(rand() * 40 - 26));
    const h = f32BitsToF16(bits(x));
    const y = f16BitsToF32(h);
    // no other half is closer
    for (const d of [-1, 1]) {
      const n = (h & 0x8000) | ((h & 0x7fff) + d);
      if ((h & 0x7fff) + d < 0 || (h & 0x7fff) + d >= 0x7c00) continue;
      const z = f16BitsToF32(n);
      const dy = Math.abs(y - x), dz = Math.abs(z - x);
      assert.ok(dy < dz || (dy === dz && (h & 1) === 0), `x=${x} h=${h.toString(16)}`);
    }
  }
  // exact ties: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10 -> even (1.0)
  assert.is(f32BitsToF16(bits(1 + 2 ** -11)), 0x3c00);
  assert.is(f32BitsToF16(bits(1 + 3 * 2 ** -11)), 0x3c02);
  assert.is(f32BitsToF16(bits(65520)), 0x7c00, 'overflow to inf');
  assert.is(f32BitsToF16(bits(2 ** -25)), 0x0000, 'half of the smallest subnormal ties to 0');
  assert.is(f32BitsToF16(bits(3 * 2 ** -26)), 0x0001);
  assert.is(f32BitsToF16(bits(-(2 ** -24))), 0x8001);
});

test('f32 -> bf16 rounds to nearest even, keeps NaN', () => {
  assert.is(f32BitsToBf16(0x3f808000), 0x3f80, 'tie to even (down)');
  assert.is(f32BitsToBf16(0x3f818000), 0x3f82, 'tie to even (up)');
  assert.is(f32BitsToBf16(0x3f808001), 0x3f81);
  assert.is(f32BitsToBf16(0x7fc00001) & 0x7fc0, 0x7fc0);
  assert.is(f32BitsToBf16(0x7f7fffff), 0x7f80, 'rounds up to inf');
});

test('convertFloats round trips between dtypes', () => {
  const src = Float32Array.from([1.5, -2.25, 3.1415927, 1e-3, -65504, 0]);
  const b = new Uint8Array(src.buffer);
  const h = convertFloats(b, 'F32', 'F16');
  assert.is(h.length, 12);
  const back = new Float32Array(convertFloats(h, 'F16', 'F32').slice().buffer);
  assert.is(back[0], 1.5);
  assert.is(back[4], -65504);
  assert.ok(Math.abs(back[2] - 3.1415927) < 2e-3);
  const bf = convertFloats(h, 'F16', 'BF16');
  const back2 = new Float32Array(convertFloats(bf, 'BF16', 'F32').slice().buffer);
  assert.is(back2[1], -2.25);
  const odd = new Uint8Array(13).subarray(1); // unaligned input
  odd.set(h);
  assert.equal([...convertFloats(odd, 'F16', 'F32')], [...convertFloats(h, 'F16', 'F32')]);
});

test.run();
