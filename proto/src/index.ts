export * from './gen/countersign/v1/broker.js';
export { Duration } from './gen/google/protobuf/duration.js';
export { Timestamp } from './gen/google/protobuf/timestamp.js';
export * from './credential.js';
export * from './parameters.js';
export * from './signature.js';
export { protoRoot, brokerProtoPath } from './paths.js';
