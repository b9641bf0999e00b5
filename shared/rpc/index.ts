// The rpc helpers in one import. Generated message and service types live under ./gen/rmt/v1/
// (import them from there, e.g. '../rpc/gen/rmt/v1/learner.js').
export * from './auth.js';
export * from './client.js';
export * from './errors.js';
export * from './options.js';
export * from './server.js';
