export * from './gen/countersign/v1/broker.js';
export { Duration } from './gen/google/protobuf/duration.js';
export { Timestamp } from './gen/google/protobuf/timestamp.js';
export * from './credential.js';
export * from './errors.js';
export * from './parameters.js';
export * from './signature.js';
export { protoRoot, brokerProtoPath } from './paths.js';
export {
  descriptorSetPath,
  loadDescriptorSet,
  parseDescriptorSet,
  type DescribedFile,
  type DescriptorProto,
  type EnumDescriptorProto,
  type FieldDescriptorProto,
} from './descriptor-set.js';
export * as reflectionV1 from './gen/grpc/reflection/v1/reflection.js';
export * as reflectionV1alpha from './gen/grpc/reflection/v1alpha/reflection.js';
