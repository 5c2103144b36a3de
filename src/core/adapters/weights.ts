/**
 * An adapter's safetensors file: the header through src/core/safetensors.ts (validated; UserError naming the file),
 * tensors decoded to fp32 through src/core/dtype.ts.
 */
import { fileError } from '../errors.js';
import { readSafetensors, readTensorBytes, type TensorInfo } from '../safetensors.js';
import { FLOAT_DTYPES, toF32, type FloatDtype } from '../dtype.js';

export interface AdapterWeights {
  file: string;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** Decode one tensor to fp32 (F32, F16, BF16, F64 accepted); rejects non-finite values. */
  readF32(name: string): Float32Array;
  close(): void;
}

export function openAdapterWeights(file: string): AdapterWeights {
  const st = readSafetensors(file);
  return {
    file,
    tensors: st.tensors,
    metadata: st.metadata,
    readF32(name: string): Float32Array {
      const t = st.tensors.get(name);
      if (!t) throw fileError(file, `tensor ${name} is missing`);
      if (!FLOAT_DTYPES.has(t.dtype)) throw fileError(file, `tensor ${name} has dtype ${t.dtype}; adapter weights must be F32, F16, BF16 or F64`);
      const out = toF32(readTensorBytes(st, t), t.dtype as FloatDtype);
      for (let i = 0; i < out.length; i++) {
        if (!Number.isFinite(out[i])) throw fileError(file, `tensor ${name} holds a non-finite value (${out[i]}) at index ${i}`);
      }
      return out;
    },
    close() {
      /* readSafetensors keeps no file open */
    },
  };
}
