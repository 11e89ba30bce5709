/** Seeded PRNG for test data: the project's mulberry32 stream. */
export { uniform as mulberry } from '../../src/util/rng';
