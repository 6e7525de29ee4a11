// Loads every Lua script in a folder and registers it on a Redis connection. A file
// is named <name>-<numKeys>.lua (the BullMQ convention), so the key count is
// visible where the script is written and cannot drift from its caller. A line
// "-- @include NAME" is replaced by <folder>/include/NAME.lua, for code that several
// transitions share. Each domain keeps its scripts next to its code (requests/lua,
// audit/lua, credentials/lua, passkeys/lua) and names its folder here: the loader
// sits in redis/ so the lower layers need not import requests/.
import { readdirSync, readFileSync } from 'node:fs';
import type { Redis } from './connection.js';

export interface LuaScript {
  name: string;
  numberOfKeys: number;
  lua: string;
}

function withIncludes(dir: string, file: string, lua: string): string {
  return lua.replace(/^-- @include ([a-z-]+)$/gm, (_line, name: string) => {
    try {
      return readFileSync(`${dir}include/${name}.lua`, 'utf8');
    } catch {
      throw new Error(`lua script ${file}: cannot include ${name} (expected include/${name}.lua)`);
    }
  });
}

/** The scripts in dir (a path ending in a slash). */
export function loadScripts(dir: string): LuaScript[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.lua'))
    .map((file) => {
      const m = /^([a-zA-Z]+)-(\d+)\.lua$/.exec(file);
      if (m === null) throw new Error(`lua script ${file}: name must be <name>-<numKeys>.lua`);
      return {
        name: m[1] as string,
        numberOfKeys: Number(m[2]),
        lua: withIncludes(dir, file, readFileSync(`${dir}${file}`, 'utf8')),
      };
    });
}

export type ScriptRunner = (name: string, keys: string[], args: (string | number)[]) => Promise<unknown>;

/** Defines each script as an ioredis command (EVALSHA with EVAL fallback, also after a Cluster redirect) and returns a runner. */
export function registerScripts(redis: Redis, scripts: LuaScript[]): ScriptRunner {
  const byName = new Map(scripts.map((s) => [s.name, s]));
  for (const s of scripts) {
    redis.defineCommand(`cs_${s.name}`, { numberOfKeys: s.numberOfKeys, lua: s.lua });
  }
  return (name, keys, args) => {
    const script = byName.get(name);
    if (script === undefined) throw new Error(`no lua script named ${name}`);
    if (keys.length !== script.numberOfKeys)
      throw new Error(`lua script ${name} takes ${script.numberOfKeys} keys, got ${keys.length}`);
    const command = (redis as unknown as Record<string, (...a: (string | number)[]) => Promise<unknown>>)[
      `cs_${name}`
    ] as (...a: (string | number)[]) => Promise<unknown>;
    // ioredis falls back from EVALSHA to EVAL once per connection, but not when a Cluster
    // redirects the call (ASK during a slot migration) to a node whose script cache lacks it:
    // then NOSCRIPT reaches us. EVAL carries the script itself, so it cannot miss.
    return command.call(redis, ...keys, ...args).catch((e: unknown) => {
      if (!(e instanceof Error) || !e.message.startsWith('NOSCRIPT')) throw e;
      return redis.eval(script.lua, script.numberOfKeys, ...keys, ...args);
    });
  };
}
