export * from './fake-slack.js';
export { validateBlocks, validateModal } from './block-kit.js';
export { sampleRequest } from './sample-request.js';
