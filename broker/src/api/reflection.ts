// gRPC server reflection (grpc.reflection.v1 and v1alpha) over the descriptor set that buf
// builds from our .proto files: clients such as grpcurl get the real FileDescriptorProtos,
// with their true file names, imports and fully qualified type names. (@grpc/reflection
// rebuilds descriptors through protobufjs, which breaks map entries and imports:
// grpc/grpc-node#2958, fullstorydev/grpcurl#459.)
import {
  status,
  type ServerDuplexStream,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import {
  loadDescriptorSet,
  reflectionV1,
  reflectionV1alpha,
  type DescribedFile,
  type DescriptorProto,
  type EnumDescriptorProto,
  type FieldDescriptorProto,
} from '@countersign/proto';

type Request = reflectionV1.ServerReflectionRequest;
type Response = reflectionV1.ServerReflectionResponse;

export const REFLECTION_SERVICES = [
  'grpc.reflection.v1.ServerReflection',
  'grpc.reflection.v1alpha.ServerReflection',
] as const;

class ReflectionError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

/** What reflection knows: files by name, the file declaring each symbol, and extensions by extendee. */
export class DescriptorIndex {
  private readonly symbols = new Map<string, string>();
  private readonly extensions = new Map<string, Map<number, string>>();

  constructor(private readonly files: Map<string, DescribedFile>) {
    for (const [name, { proto }] of files) {
      const pkg = proto.package;
      const add = (symbol: string) => this.symbols.set(symbol, name);
      const addExtension = (scope: string, ext: FieldDescriptorProto) => {
        add(`${scope}.${ext.name}`);
        const extendee = ext.extendee.replace(/^\./, '');
        const byNumber = this.extensions.get(extendee) ?? new Map<number, string>();
        byNumber.set(ext.number, name);
        this.extensions.set(extendee, byNumber);
      };
      // Enum values live in the scope enclosing their enum, as in protoc.
      const addEnum = (scope: string, e: EnumDescriptorProto) => {
        add(`${scope}.${e.name}`);
        for (const v of e.value) add(`${scope}.${v.name}`);
      };
      const addMessage = (scope: string, m: DescriptorProto) => {
        const full = `${scope}.${m.name}`;
        add(full);
        for (const f of m.field) add(`${full}.${f.name}`);
        for (const o of m.oneofDecl) add(`${full}.${o.name}`);
        for (const nested of m.nestedType) addMessage(full, nested);
        for (const e of m.enumType) addEnum(full, e);
        for (const ext of m.extension) addExtension(full, ext);
      };
      const scope = pkg === '' ? '' : pkg;
      const qualified = (n: string) => (scope === '' ? n : `${scope}.${n}`);
      for (const m of proto.messageType) addMessage(scope, m);
      for (const e of proto.enumType) addEnum(scope, e);
      for (const ext of proto.extension) addExtension(scope, ext);
      for (const s of proto.service) {
        add(qualified(s.name));
        for (const method of s.method) add(`${qualified(s.name)}.${method.name}`);
      }
    }
    // Names in a package-less file were built with a leading "."; store them without it.
    for (const [symbol, file] of [...this.symbols]) {
      if (symbol.startsWith('.')) {
        this.symbols.delete(symbol);
        this.symbols.set(symbol.slice(1), file);
      }
    }
  }

  has(symbol: string): boolean {
    return this.symbols.has(symbol);
  }

  /** The file and everything it imports, directly or not: what a client needs to resolve it. */
  fileWithDependencies(name: string): Buffer[] {
    const seen = new Set<string>();
    const order: string[] = [];
    const visit = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const described = this.files.get(file);
      if (described === undefined) throw new ReflectionError(status.NOT_FOUND, `file not found: ${file}`);
      order.push(file);
      for (const dep of described.proto.dependency) visit(dep);
    };
    visit(name);
    return order.map((f) => (this.files.get(f) as DescribedFile).bytes);
  }

  fileByName(name: string): Buffer[] {
    if (!this.files.has(name)) throw new ReflectionError(status.NOT_FOUND, `file not found: ${name}`);
    return this.fileWithDependencies(name);
  }

  fileContainingSymbol(symbol: string): Buffer[] {
    const file = this.symbols.get(symbol.replace(/^\./, ''));
    if (file === undefined) throw new ReflectionError(status.NOT_FOUND, `symbol not found: ${symbol}`);
    return this.fileWithDependencies(file);
  }

  fileContainingExtension(type: string, number: number): Buffer[] {
    const file = this.extensions.get(type.replace(/^\./, ''))?.get(number);
    if (file === undefined) throw new ReflectionError(status.NOT_FOUND, `no extension ${number} of ${type}`);
    return this.fileWithDependencies(file);
  }

  extensionNumbersOf(type: string): number[] {
    const name = type.replace(/^\./, '');
    if (!this.symbols.has(name)) throw new ReflectionError(status.NOT_FOUND, `type not found: ${type}`);
    return [...(this.extensions.get(name)?.keys() ?? [])].sort((a, b) => a - b);
  }
}

/** Answers one reflection request; the same shapes serve v1 and v1alpha. */
export function answerReflection(index: DescriptorIndex, services: readonly string[], req: Request): Response {
  const response: Response = {
    validHost: req.host,
    originalRequest: req,
    fileDescriptorResponse: undefined,
    allExtensionNumbersResponse: undefined,
    listServicesResponse: undefined,
    errorResponse: undefined,
  };
  try {
    if (req.listServices !== undefined) {
      response.listServicesResponse = { service: services.map((name) => ({ name })) };
    } else if (req.fileContainingSymbol !== undefined) {
      response.fileDescriptorResponse = { fileDescriptorProto: index.fileContainingSymbol(req.fileContainingSymbol) };
    } else if (req.fileByFilename !== undefined) {
      response.fileDescriptorResponse = { fileDescriptorProto: index.fileByName(req.fileByFilename) };
    } else if (req.fileContainingExtension !== undefined) {
      const { containingType, extensionNumber } = req.fileContainingExtension;
      response.fileDescriptorResponse = {
        fileDescriptorProto: index.fileContainingExtension(containingType, extensionNumber),
      };
    } else if (req.allExtensionNumbersOfType !== undefined) {
      const type = req.allExtensionNumbersOfType;
      response.allExtensionNumbersResponse = { baseTypeName: type, extensionNumber: index.extensionNumbersOf(type) };
    } else {
      throw new ReflectionError(
        status.INVALID_ARGUMENT,
        'the request names no question (list_services, file_containing_symbol, ...)',
      );
    }
  } catch (e) {
    const error = e instanceof ReflectionError ? e : new ReflectionError(status.INTERNAL, 'reflection failed');
    response.errorResponse = { errorCode: error.code, errorMessage: error.message };
  }
  return response;
}

export interface ServedService {
  definition: ServiceDefinition;
  implementation: UntypedServiceImplementation;
}

/**
 * Both reflection services, listing `served` (plus themselves). Every listed service must be
 * in the descriptor set, so a service added without `npm run proto` fails at start-up.
 */
export function reflectionServices(
  served: readonly string[],
  files: Map<string, DescribedFile> = loadDescriptorSet(),
): ServedService[] {
  const index = new DescriptorIndex(files);
  const services = [...served, ...REFLECTION_SERVICES];
  const missing = services.filter((s) => !index.has(s));
  if (missing.length > 0)
    throw new Error(`server reflection: the descriptor set lacks ${missing.join(', ')}; run npm run proto`);
  const serverReflectionInfo = (call: ServerDuplexStream<Request, Response>) => {
    call.on('data', (req: Request) => call.write(answerReflection(index, services, req)));
    call.on('end', () => call.end());
  };
  return [
    { definition: reflectionV1.ServerReflectionService, implementation: { serverReflectionInfo } },
    { definition: reflectionV1alpha.ServerReflectionService, implementation: { serverReflectionInfo } },
  ];
}
