export * from './verify.js';
export * from './jwks.js';
export {
  countersignInterceptor,
  credentialOf,
  bearerToken,
  type GrpcVerifierOptions,
  type MethodBinding,
} from './grpc.js';
export {
  countersignHttp,
  credentialOfRequest,
  type HttpVerifierOptions,
  type RequestDescription,
  type NextFunction,
} from './http.js';
