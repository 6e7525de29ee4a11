// --param k=v (a string) and k:=JSON (any JSON value), merged with --parameters-json.
import type { JsonObject, JsonValue } from '@countersign/proto';
import { CountersignClientError } from '../sdk/errors.js';

export function parseParams(params: string[], parametersJson: string | undefined): JsonObject {
  let base: JsonObject = {};
  if (parametersJson !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(parametersJson);
    } catch (e) {
      throw new CountersignClientError('ERR_USAGE', `--parameters-json is not valid JSON: ${(e as Error).message}`);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new CountersignClientError('ERR_USAGE', '--parameters-json must be a JSON object, e.g. \'{"version":"1.2.3"}\'');
    }
    base = parsed as JsonObject;
  }
  const out: JsonObject = { ...base };
  for (const p of params) {
    const typed = /^([^=:]+):=(.*)$/s.exec(p);
    const plain = /^([^=]+)=(.*)$/s.exec(p);
    let key: string;
    let value: JsonValue;
    if (typed) {
      key = typed[1] as string;
      try {
        value = JSON.parse(typed[2] as string) as JsonValue;
      } catch {
        throw new CountersignClientError('ERR_USAGE', `--param ${p}: the value after ":=" must be JSON (e.g. count:=3, flags:='["a"]')`);
      }
    } else if (plain) {
      key = plain[1] as string;
      value = plain[2] as string;
    } else {
      throw new CountersignClientError('ERR_USAGE', `--param ${JSON.stringify(p)}: expected key=value (a string) or key:=json`);
    }
    if (Object.hasOwn(out, key)) throw new CountersignClientError('ERR_USAGE', `--param ${key} is given more than once (or also in --parameters-json)`);
    out[key] = value;
  }
  return out;
}
