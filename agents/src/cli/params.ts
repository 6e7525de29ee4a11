// --parameters-json TEXT (one JSON object) and --param k=v (a string) / k:=JSON
// (any JSON value), turned into the parameters_json text the broker receives.
// Nothing is parsed and re-serialised: --parameters-json is sent exactly as
// typed, and each --param adds a member written from what was typed (k=v as a
// JSON string, k:=JSON as typed). Everything passes the broker's own strict
// rules (@countersign/proto) first; what would not is refused, never changed.
import { ParametersError, parseParametersJson, type JsonObject } from '@countersign/proto';
import { CountersignClientError } from '../sdk/errors.js';

const usage = (message: string) => new CountersignClientError('ERR_USAGE', message);

function check(what: string, text: string): ReturnType<typeof parseParametersJson> {
  try {
    return parseParametersJson(text);
  } catch (e) {
    if (e instanceof ParametersError) throw usage(`${what} ${e.message}`);
    throw e;
  }
}

/** The parameters_json text for these flags ('{}' when there are none). */
export function parametersJsonFromFlags(params: string[], parametersJson: string | undefined): string {
  const base = parametersJson === undefined ? undefined : check('--parameters-json', parametersJson);
  if (params.length === 0) return parametersJson === undefined || parametersJson.trim() === '' ? '{}' : parametersJson;

  const names = new Set(Object.keys(base ?? {}));
  const members: string[] = [];
  for (const p of params) {
    const typed = /^([^=:]+):=(.*)$/s.exec(p);
    const plain = /^([^=]+)=(.*)$/s.exec(p);
    let name: string;
    let valueText: string;
    if (typed) {
      name = typed[1] as string;
      valueText = typed[2] as string;
    } else if (plain) {
      name = plain[1] as string;
      valueText = JSON.stringify(plain[2]);
    } else {
      throw usage(`--param ${JSON.stringify(p)}: expected key=value (a string) or key:=json`);
    }
    if (names.has(name)) throw usage(`--param ${name} is given more than once (or also in --parameters-json)`);
    names.add(name);
    const member = `${JSON.stringify(name)}:${valueText}`;
    // Each member on its own first, so the message points at the flag that is wrong.
    try {
      if (Object.keys(parseParametersJson(`{${member}}`)).length !== 1)
        throw new ParametersError('syntax', '$', 'is more than one value');
    } catch (e) {
      if (!(e instanceof ParametersError)) throw e;
      if (typed && e.problem === 'syntax')
        throw usage(`--param ${p}: the value after ":=" must be JSON (e.g. count:=3, flags:='["a"]')`);
      throw usage(`--param ${p}: ${e.message}`);
    }
    members.push(member);
  }

  // The members go after those of --parameters-json, whose text stays as typed.
  let text: string;
  if (parametersJson === undefined || base === undefined || Object.keys(base).length === 0) {
    text = `{${members.join(',')}}`;
  } else {
    const close = parametersJson.lastIndexOf('}');
    text = `${parametersJson.slice(0, close)},${members.join(',')}${parametersJson.slice(close)}`;
  }
  check('the parameters (--parameters-json with --param)', text);
  return text;
}

/** The same flags as a value, for comparing with a credential's parameters_digest (`countersign verify`). */
export function parseParams(params: string[], parametersJson: string | undefined): JsonObject {
  return parseParametersJson(parametersJsonFromFlags(params, parametersJson));
}
