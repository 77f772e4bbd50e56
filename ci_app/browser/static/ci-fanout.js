// ci-fanout browser pool helper, loaded by every pool page (a loopback secure context).
// - watches every WebGPU device a page creates: a loss that the page did not ask for
//   (reason other than "destroyed") is kept in __ciFanout.deviceLost for the pool;
// - runCompute(): one WGSL compute dispatch with byte buffers in and out (base64), timed;
// - resetStorage(): clears what a test may have stored for this origin.
(() => {
  "use strict";
  const state = { deviceLost: null, devices: 0 };
  window.__ciFanout = state;

  if (navigator.gpu && window.GPUAdapter && GPUAdapter.prototype.requestDevice) {
    const requestDevice = GPUAdapter.prototype.requestDevice;
    GPUAdapter.prototype.requestDevice = async function (...args) {
      const device = await requestDevice.apply(this, args);
      state.devices += 1;
      device.lost.then((info) => {
        if (info && info.reason !== "destroyed") {
          state.deviceLost = { reason: String(info.reason), message: String(info.message || "") };
        }
      });
      return device;
    };
  }

  const fromB64 = (text) => {
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  };
  const toB64 = (bytes) => {
    let bin = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(bin);
  };

  let cached = null; // {adapter, device}
  async function gpuDevice() {
    if (cached && !state.deviceLost) return cached;
    if (!navigator.gpu) throw new Error("navigator.gpu is missing (not a secure context?)");
    const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
    if (!adapter) throw new Error("requestAdapter() returned null: no WebGPU adapter");
    const device = await adapter.requestDevice();
    cached = { adapter, device };
    return cached;
  }

  // spec: {code, entryPoint, buffers: [{data: b64|null, size: bytes, kind: "read"|"storage"|"uniform", output: bool}],
  //        workgroups: [x, y, z], repeat: n}
  state.runCompute = async (spec) => {
    const { device } = await gpuDevice();
    const t0 = performance.now();
    const module = device.createShaderModule({ code: spec.code });
    const pipeline = await device.createComputePipelineAsync({
      layout: "auto",
      compute: { module, entryPoint: spec.entryPoint || "main" },
    });
    const compileMs = performance.now() - t0;
    const usage = {
      read: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      storage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
      uniform: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    };
    const buffers = spec.buffers.map((b) => {
      const size = Math.max(16, Math.ceil(b.size / 16) * 16);
      const buf = device.createBuffer({ size, usage: usage[b.kind] });
      if (b.data) {
        const bytes = fromB64(b.data);
        const padded = new Uint8Array(Math.ceil(bytes.length / 4) * 4);
        padded.set(bytes);
        device.queue.writeBuffer(buf, 0, padded);
      }
      return buf;
    });
    const bindGroup = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    const reads = [];
    const t1 = performance.now();
    const encoder = device.createCommandEncoder();
    for (let r = 0; r < (spec.repeat || 1); r++) {
      const pass = encoder.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(...spec.workgroups);
      pass.end();
    }
    spec.buffers.forEach((b, i) => {
      if (!b.output) return;
      const rb = device.createBuffer({
        size: buffers[i].size,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      encoder.copyBufferToBuffer(buffers[i], 0, rb, 0, buffers[i].size);
      reads.push([i, rb]);
    });
    device.queue.submit([encoder.finish()]);
    const outputs = {};
    for (const [i, rb] of reads) {
      await rb.mapAsync(GPUMapMode.READ);
      outputs[i] = toB64(new Uint8Array(rb.getMappedRange()).slice(0, spec.buffers[i].size));
      rb.unmap();
      rb.destroy();
    }
    const runMs = performance.now() - t1;
    buffers.forEach((b) => b.destroy());
    if (state.deviceLost) throw new Error("GPU device lost: " + state.deviceLost.message);
    return { outputs, compileMs, runMs };
  };

  state.resetStorage = async () => {
    try { sessionStorage.clear(); localStorage.clear(); } catch (e) { /* opaque origin */ }
    try {
      if (indexedDB.databases) {
        for (const db of await indexedDB.databases()) if (db.name) indexedDB.deleteDatabase(db.name);
      }
    } catch (e) { /* not available */ }
    try { for (const k of await caches.keys()) await caches.delete(k); } catch (e) { /* none */ }
    try {
      if (navigator.serviceWorker) {
        for (const r of await navigator.serviceWorker.getRegistrations()) await r.unregister();
      }
    } catch (e) { /* none */ }
    return true;
  };
})();
