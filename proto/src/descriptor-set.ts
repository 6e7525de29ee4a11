// The descriptor set that server reflection serves: the real FileDescriptorProtos of every
// file the broker serves and their imports, built by buf (`npm run proto`) and checked like
// the generated code. Each file keeps the exact bytes buf wrote, so what grpcurl or any other
// client decodes is what protoc would have produced.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { fromBinary } from '@bufbuild/protobuf';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { FileDescriptorProtoSchema, type FileDescriptorProto } from '@bufbuild/protobuf/wkt';

export type {
  DescriptorProto,
  EnumDescriptorProto,
  FieldDescriptorProto,
  FileDescriptorProto,
} from '@bufbuild/protobuf/wkt';

// Next to this module: src/gen in the repository, dist/gen in the package (the build copies it).
export const descriptorSetPath = fileURLToPath(new URL('./gen/descriptors.binpb', import.meta.url));

export interface DescribedFile {
  proto: FileDescriptorProto;
  /** The FileDescriptorProto exactly as encoded in the set. */
  bytes: Buffer;
}

/** Splits a FileDescriptorSet (field 1: repeated FileDescriptorProto) into its files, by name. */
export function parseDescriptorSet(set: Uint8Array): Map<string, DescribedFile> {
  const files = new Map<string, DescribedFile>();
  const reader = new BinaryReader(set);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field !== 1 || wireType !== WireType.LengthDelimited) {
      reader.skip(wireType, field);
      continue;
    }
    const bytes = Buffer.from(reader.bytes());
    const proto = fromBinary(FileDescriptorProtoSchema, bytes);
    files.set(proto.name, { proto, bytes });
  }
  return files;
}

/** The broker's descriptor set, read once from the package. */
export const loadDescriptorSet = (path: string = descriptorSetPath): Map<string, DescribedFile> =>
  parseDescriptorSet(readFileSync(path));
