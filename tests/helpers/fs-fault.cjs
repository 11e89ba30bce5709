// Preloaded with `node -r tests/helpers/fs-fault.cjs dist/trainer.cjs ...` to simulate a full or
// read-only disk under one folder (root cannot make chmod refuse, and a tiny tmpfs needs mount rights).
// ARENAKIT_TEST_FS_FAULT = JSON {"code": "ENOSPC" | "EROFS" | "EACCES", "under": DIR, "budget": BYTES}:
// - EROFS / EACCES: creating, writing or renaming anything under DIR fails at once;
// - ENOSPC: files can be created, but after `budget` bytes written under DIR every write fails
//   (the write that crosses the limit writes its first part, as a real full disk does).
// The bundles call fs functions through the module object (esbuild keeps `fs.writeFileSync(...)`), so
// patching the module here reaches them.
const fs = require('node:fs');
const path = require('node:path');

const spec = JSON.parse(process.env.ARENAKIT_TEST_FS_FAULT || 'null');
if (spec) {
  const under = path.resolve(spec.under) + path.sep;
  const inside = (p) => typeof p === 'string' && (path.resolve(p) + path.sep).startsWith(under);
  let left = spec.budget ?? 0;
  const fail = (syscall, p) =>
    Object.assign(new Error(`${spec.code}: simulated, ${syscall} '${p}'`), { code: spec.code, syscall, path: p });
  const full = spec.code === 'ENOSPC';
  const fds = new Set();
  const wrap = (name, f) => {
    const orig = fs[name];
    fs[name] = function (...args) {
      return f(orig.bind(fs), ...args);
    };
  };
  const isWriteFlag = (flags) => typeof flags === 'string' && /[wa+]/.test(flags);
  wrap('openSync', (orig, p, flags, ...rest) => {
    if (inside(p) && isWriteFlag(flags) && !full) throw fail('open', p);
    const fd = orig(p, flags, ...rest);
    if (inside(p) && isWriteFlag(flags)) fds.add(fd);
    return fd;
  });
  wrap('closeSync', (orig, fd) => {
    fds.delete(fd);
    return orig(fd);
  });
  const spend = (bytes, doPart, syscall, p) => {
    if (bytes <= left) {
      left -= bytes;
      return;
    }
    const part = left;
    left = 0;
    doPart(part);
    throw fail(syscall, p);
  };
  wrap('writeSync', (orig, fd, buf, off = 0, len, ...rest) => {
    if (!fds.has(fd)) return orig(fd, buf, off, len, ...rest);
    const b = typeof buf === 'string' ? Buffer.from(buf) : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    const n = typeof buf === 'string' ? b.length : (len ?? b.length - off);
    spend(n, (k) => k && orig(fd, b, typeof buf === 'string' ? 0 : off, k), 'write', `fd ${fd}`);
    return orig(fd, buf, off, len, ...rest);
  });
  for (const name of ['writeFileSync', 'appendFileSync'])
    wrap(name, (orig, p, data, ...rest) => {
      if (!inside(p)) return orig(p, data, ...rest);
      if (!full) throw fail('open', p);
      const b = Buffer.from(typeof data === 'string' ? data : data.buffer ? Buffer.from(data.buffer) : data);
      spend(b.length, (k) => orig(p, b.subarray(0, k)), 'write', p);
      return orig(p, data, ...rest);
    });
  wrap('copyFileSync', (orig, src, dst, ...rest) => {
    if (!inside(dst)) return orig(src, dst, ...rest);
    if (!full) throw fail('copyfile', dst);
    spend(fs.statSync(src).size, (k) => orig(src, dst) || fs.truncateSync(dst, k), 'copyfile', dst);
    return orig(src, dst, ...rest);
  });
  for (const name of ['mkdirSync', 'linkSync', 'mkdtempSync'])
    wrap(name, (orig, ...args) => {
      const p = name === 'linkSync' ? args[1] : args[0];
      if (inside(p) && !full) throw fail(name.replace('Sync', '').toLowerCase(), p);
      return orig(...args);
    });
  wrap('renameSync', (orig, a, b) => {
    if ((inside(a) || inside(b)) && !full) throw fail('rename', b);
    return orig(a, b);
  });
}
