import { fileURLToPath } from 'node:url';

/** Folder holding the .proto sources, for proto-loader and tools. */
export const protoRoot = fileURLToPath(new URL('..', import.meta.url));
export const brokerProtoPath = 'countersign/v1/broker.proto';
