/**
 * Installs WebGPU in Node for gpu.js: gpu.js looks for `navigator.gpu`, which Node does not have, so we
 * take it from the `webgpu` package (Google's Dawn). Tried in order:
 *
 * 1. A native adapter (Vulkan / Metal / D3D12) with Dawn's unsafe-API and no-robustness toggles, for
 *    real GPUs.
 * 2. Dawn's OpenGL ES backend in compatibility mode. On a machine without a GPU this reaches Mesa's
 *    llvmpipe software renderer through EGL (needs `EGL_PLATFORM=surfaceless`, which we set when it is
 *    unset, and the Debian packages `libegl-dev libegl-mesa0 libgl1-mesa-dri`). gpu.js requests its
 *    adapter without `featureLevel: 'compatibility'`, so `navigator.gpu.requestAdapter` is wrapped to
 *    add it. That adapter is correct but slow: `software` is true and `auto` does not pick it.
 *
 * Every failure resolves to `{ ok: false, reason }` so callers can fall back. The result is cached:
 * the first call decides for the whole process.
 */

export interface WebgpuSetup {
  ok: boolean;
  /** Why WebGPU is unavailable (ok = false), or which adapter was found (ok = true). */
  reason: string;
  /** A software rasteriser (llvmpipe, SwiftShader, ...): fine for correctness tests, too slow to train. */
  software: boolean;
  /** 'native' or 'opengles-compat'. */
  path?: string;
  /** Largest storage buffer binding the adapter allows, in bytes. */
  maxStorageBufferBindingSize?: number;
}

const REAL_GPU_FLAGS = ['enable-dawn-features=allow_unsafe_apis,disable_robustness'];
const SOFTWARE_NAMES = /llvmpipe|softpipe|swiftshader|lavapipe|software/i;

interface AdapterLike {
  info?: { vendor?: string; architecture?: string; device?: string; description?: string };
  isFallbackAdapter?: boolean;
  limits?: { maxStorageBufferBindingSize?: number };
}
interface GpuLike {
  requestAdapter(options?: Record<string, unknown>): Promise<AdapterLike | null>;
}
interface WebgpuModule {
  create(flags: string[]): GpuLike;
  globals: Record<string, unknown>;
}

let pending: Promise<WebgpuSetup> | null = null;

export function setupWebgpu(): Promise<WebgpuSetup> {
  if (!pending) pending = trySetup();
  return pending;
}

function describe(adapter: AdapterLike): string {
  const info = adapter.info ?? {};
  return [info.vendor, info.architecture, info.device, info.description].filter((s) => s).join(' / ');
}

function isSoftware(adapter: AdapterLike): boolean {
  return adapter.isFallbackAdapter === true || SOFTWARE_NAMES.test(describe(adapter));
}

function installNavigator(gpu: GpuLike): void {
  const g = globalThis as unknown as { navigator?: object };
  if (g.navigator && typeof g.navigator === 'object') {
    Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true, writable: true });
  } else {
    Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  }
}

async function trySetup(): Promise<WebgpuSetup> {
  const existing = (globalThis as unknown as { navigator?: { gpu?: GpuLike } }).navigator?.gpu;
  if (existing) {
    // a browser, or something else already installed WebGPU: use it as it is
    try {
      const adapter = await existing.requestAdapter();
      if (!adapter) return { ok: false, reason: 'navigator.gpu present but no adapter', software: false };
      return finish(adapter, 'existing');
    } catch (e) {
      return { ok: false, reason: `navigator.gpu.requestAdapter failed: ${String(e)}`, software: false };
    }
  }

  let mod: WebgpuModule;
  try {
    mod = (await import('webgpu')) as unknown as WebgpuModule;
  } catch (e) {
    return { ok: false, reason: `cannot load the webgpu package: ${String(e)}`, software: false };
  }
  try {
    Object.assign(globalThis, mod.globals);
  } catch (e) {
    return { ok: false, reason: `cannot install WebGPU globals: ${String(e)}`, software: false };
  }

  const failures: string[] = [];
  // 1. a native adapter
  try {
    const gpu = mod.create(REAL_GPU_FLAGS);
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (adapter) {
      installNavigator(gpu);
      return finish(adapter, 'native');
    }
    failures.push('native: no adapter');
  } catch (e) {
    failures.push(`native: ${String(e)}`);
  }

  // 2. OpenGL ES in compatibility mode (Mesa llvmpipe on CPU-only machines)
  try {
    if (process.env.EGL_PLATFORM === undefined) process.env.EGL_PLATFORM = 'surfaceless';
    const gpu = mod.create(['backend=opengles']);
    const request = gpu.requestAdapter.bind(gpu);
    const compat = (options?: Record<string, unknown>) =>
      request({ featureLevel: 'compatibility', ...(options ?? {}) });
    const adapter = await compat();
    if (adapter) {
      gpu.requestAdapter = compat;
      installNavigator(gpu);
      return finish(adapter, 'opengles-compat');
    }
    failures.push('opengles-compat: no adapter');
  } catch (e) {
    failures.push(`opengles-compat: ${String(e)}`);
  }
  return { ok: false, reason: failures.join('; '), software: false };
}

function finish(adapter: AdapterLike, path: string): WebgpuSetup {
  return {
    ok: true,
    reason: `${path}: ${describe(adapter) || 'unnamed adapter'}`,
    software: isSoftware(adapter),
    path,
    maxStorageBufferBindingSize: adapter.limits?.maxStorageBufferBindingSize,
  };
}
