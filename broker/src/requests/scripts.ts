// The request state machine's Lua scripts (./lua, one per transition), registered
// through the loader in redis/scripts.ts.
import { fileURLToPath } from 'node:url';
import type { Redis } from '../redis/connection.js';
import {
  loadScripts as loadScriptsIn,
  registerScripts as registerScriptsOn,
  type LuaScript,
  type ScriptRunner,
} from '../redis/scripts.js';

export type { LuaScript, ScriptRunner };

export const REQUESTS_LUA_DIR = fileURLToPath(new URL('./lua/', import.meta.url));

export function loadScripts(dir: string = REQUESTS_LUA_DIR): LuaScript[] {
  return loadScriptsIn(dir);
}

/** Defines each script as an ioredis command (EVALSHA with EVAL fallback) and returns a runner. */
export function registerScripts(redis: Redis, scripts: LuaScript[] = loadScripts()): ScriptRunner {
  return registerScriptsOn(redis, scripts);
}
