// Types for build/pack-fetch.mjs (tests import the pins and the cache location from it).
export declare class PackError extends Error {}
export interface Pin {
  pkg: string;
  version: string;
  integrity: string;
  files: string[];
}
export declare const NODE_PIN: Pin;
export declare const CUDA_PIN: Pin & { ort: string };
export declare function cacheDir(env?: NodeJS.ProcessEnv): string;
export declare function fetchPinned(pin: Pin, opts?: { cache?: string; log?: (msg: string) => void }): Promise<string>;
export declare function checkCudaPairing(ortVersion: string, pin?: Pin & { ort: string }): void;
