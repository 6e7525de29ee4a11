// The directory of people: each principal's identities on each channel, and
// groups. Policy names principals and groups; channels map who clicked or who
// connected back to a principal through this directory.
import { readFile } from 'node:fs/promises';
import type { Principal, PrincipalDirectory } from '@countersign/approvers';
import { z } from 'zod';
import { parseYaml, validateYaml, YamlValidationError } from '../config/yaml-file.js';
import { parseSpiffeId } from '../identity/spiffe-id.js';
import {
  canonicalPrincipalName,
  normalizePrincipalName,
  PRINCIPAL_NAME_GRAMMAR,
  principalNameProblem,
} from './principal-name.js';

export const MAX_PRINCIPALS_BYTES = 1024 * 1024;

/** A name or an address, in its canonical form (policy/principal-name.ts): what every comparison uses. */
const canonical = (kind: 'name' | 'email') =>
  z.string().transform((raw, ctx) => {
    const problem = principalNameProblem(raw);
    if (problem !== undefined) {
      ctx.addIssue({
        code: 'custom',
        message: `${JSON.stringify(raw)} ${problem}; expected ${kind === 'email' ? 'an e-mail address (ASCII; an international domain in its xn-- form)' : PRINCIPAL_NAME_GRAMMAR}`,
      });
      return z.NEVER;
    }
    const value = normalizePrincipalName(raw, kind);
    if (kind === 'email' && !value.includes('@')) {
      ctx.addIssue({ code: 'custom', message: `${JSON.stringify(raw)} is not an e-mail address` });
      return z.NEVER;
    }
    return value;
  });
const name = canonical('name');
const spiffeId = z.string().superRefine((id, ctx) => {
  try {
    if (parseSpiffeId(id).path === '')
      ctx.addIssue({ code: 'custom', message: `${id} names a trust domain, not a person` });
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
  }
});

const principalSchema = z
  .object({
    name,
    display_name: z.string().max(256).optional(),
    slack_user_id: z
      .string()
      .regex(/^[UW][A-Z0-9]{2,20}$/, 'expected a Slack user id such as U0ALICE')
      .optional(),
    email: canonical('email').optional(),
    /** The "sub" the identity provider gives this person (console.oidc.claim: sub); exact, subjects are opaque. */
    oidc_subject: z.string().min(1).max(255).optional(),
    /** Their GitHub / GitLab login: a CI token's actor claim maps to them (identity.oidc[].actor). Compared case-insensitively. */
    github_login: z
      .string()
      .regex(/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$/, 'expected a GitHub login such as octocat')
      .transform((v) => v.toLowerCase())
      .optional(),
    gitlab_login: z
      .string()
      .regex(/^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}$/, 'expected a GitLab username such as jdoe')
      .transform((v) => v.toLowerCase())
      .optional(),
    spiffe_ids: z.array(spiffeId).max(16).default([]),
  })
  .strict();

const groupSchema = z
  .object({
    name,
    members: z.array(name).max(1024).optional(),
    /** A Slack user group id (S...), resolved through the Slack channel. */
    slack_usergroup: z
      .string()
      .regex(/^S[A-Z0-9]{2,20}$/, 'expected a Slack user group id such as S0OPS')
      .optional(),
  })
  .strict()
  .refine((g) => (g.members === undefined) !== (g.slack_usergroup === undefined), {
    message: 'a group has exactly one of members or slack_usergroup',
  });

export const principalsSchema = z
  .object({
    version: z.literal(1),
    principals: z.array(principalSchema).max(10_000),
    groups: z.array(groupSchema).max(1000).default([]),
  })
  .strict()
  .superRefine((doc, ctx) => {
    // Names and addresses are canonical here (lower case), so "Alice" and "alice" are the same entry.
    const unique = (values: (string | undefined)[], what: string, path: (i: number) => (string | number)[]) => {
      const seen = new Map<string, number>();
      values.forEach((v, i) => {
        if (v === undefined) return;
        const first = seen.get(v);
        if (first !== undefined)
          ctx.addIssue({
            code: 'custom',
            message: `${what} ${JSON.stringify(v)} is already used by entry ${first}`,
            path: path(i),
          });
        else seen.set(v, i);
      });
    };
    unique(
      doc.principals.map((p) => p.name),
      'principal name',
      (i) => ['principals', i, 'name'],
    );
    unique(
      doc.principals.map((p) => p.slack_user_id),
      'slack_user_id',
      (i) => ['principals', i, 'slack_user_id'],
    );
    unique(
      doc.principals.map((p) => p.email),
      'email',
      (i) => ['principals', i, 'email'],
    );
    unique(
      doc.principals.map((p) => p.oidc_subject),
      'oidc_subject',
      (i) => ['principals', i, 'oidc_subject'],
    );
    unique(
      doc.principals.map((p) => p.github_login),
      'github_login',
      (i) => ['principals', i, 'github_login'],
    );
    unique(
      doc.principals.map((p) => p.gitlab_login),
      'gitlab_login',
      (i) => ['principals', i, 'gitlab_login'],
    );
    unique(
      doc.groups.map((g) => g.name),
      'group name',
      (i) => ['groups', i, 'name'],
    );
    // on_behalf_of may be a name or an address: one value must never mean two people.
    const emailOwner = new Map(
      doc.principals.flatMap((p, i) => (p.email === undefined ? [] : [[p.email, i] as const])),
    );
    doc.principals.forEach((p, i) => {
      const owner = emailOwner.get(p.name);
      if (owner !== undefined && owner !== i) {
        ctx.addIssue({
          code: 'custom',
          message: `principal name ${JSON.stringify(p.name)} is the e-mail address of entry ${owner}: it would name two people`,
          path: ['principals', i, 'name'],
        });
      }
    });
    const names = new Set(doc.principals.map((p) => p.name));
    doc.groups.forEach((g, gi) =>
      (g.members ?? []).forEach((m, mi) => {
        if (!names.has(m))
          ctx.addIssue({
            code: 'custom',
            message: `unknown principal ${JSON.stringify(m)}`,
            path: ['groups', gi, 'members', mi],
          });
      }),
    );
    const owners = new Map<string, string>();
    doc.principals.forEach((p, pi) =>
      p.spiffe_ids.forEach((id, ii) => {
        const owner = owners.get(id);
        if (owner !== undefined)
          ctx.addIssue({
            code: 'custom',
            message: `${id} already belongs to ${owner}`,
            path: ['principals', pi, 'spiffe_ids', ii],
          });
        else owners.set(id, p.name);
      }),
    );
  });

export type PrincipalsDocument = z.output<typeof principalsSchema>;

/** Resolves a Slack user group to Slack user ids (provided by the Slack channel). */
export type SlackUsergroupResolver = (usergroupId: string) => Promise<string[]>;

export class Principals implements PrincipalDirectory {
  private readonly byNameMap = new Map<string, Principal>();
  private readonly bySpiffe = new Map<string, Principal>();
  private readonly bySlack = new Map<string, Principal>();
  private readonly byMail = new Map<string, Principal>();
  private readonly bySubject = new Map<string, Principal>();
  private readonly byLoginMap = new Map<string, Principal>();
  private readonly groups = new Map<string, { members?: string[]; slackUsergroup?: string }>();

  constructor(
    readonly document: PrincipalsDocument,
    private readonly slackUsergroups: SlackUsergroupResolver | undefined = undefined,
  ) {
    for (const p of document.principals) {
      const principal: Principal = {
        name: p.name,
        displayName: p.display_name ?? p.name,
        slackUserId: p.slack_user_id,
        email: p.email,
        spiffeIds: p.spiffe_ids,
      };
      this.byNameMap.set(p.name, principal);
      for (const id of p.spiffe_ids) this.bySpiffe.set(id, principal);
      if (p.slack_user_id) this.bySlack.set(p.slack_user_id, principal);
      if (p.email) this.byMail.set(p.email, principal);
      if (p.oidc_subject) this.bySubject.set(p.oidc_subject, principal);
      if (p.github_login) this.byLoginMap.set(`github_login:${p.github_login}`, principal);
      if (p.gitlab_login) this.byLoginMap.set(`gitlab_login:${p.gitlab_login}`, principal);
    }
    for (const g of document.groups) {
      this.groups.set(g.name, g.members ? { members: g.members } : { slackUsergroup: g.slack_usergroup });
    }
  }

  static empty(): Principals {
    return new Principals({ version: 1, principals: [], groups: [] });
  }

  static parse(text: string, source: string): Principals {
    const parsed = parseYaml(text, source, { maxBytes: MAX_PRINCIPALS_BYTES, errorCode: 'ERR_PRINCIPALS_INVALID' });
    return new Principals(validateYaml(parsed, principalsSchema, 'ERR_PRINCIPALS_INVALID'));
  }

  static async load(file: string): Promise<Principals> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      throw new YamlValidationError('ERR_PRINCIPALS_INVALID', file, [
        { where: file, path: '', message: `cannot read: ${(e as Error).message}` },
      ]);
    }
    return Principals.parse(text, file);
  }

  /**
   * The same principals, with slack_usergroup groups resolved through Slack. The composition root
   * builds the resolver before the parts that look groups up, and hands them this directory; the
   * policy keeps the file's own view (it needs no Slack: static members only).
   */
  withSlackUsergroups(resolver: SlackUsergroupResolver): Principals {
    return new Principals(this.document, resolver);
  }

  hasGroup(group: string): boolean {
    return this.group(group) !== undefined;
  }

  /** Members of a group listed in the file; undefined for unknown groups and Slack user groups (known only at vote time). */
  staticMembers(group: string): readonly string[] | undefined {
    return this.group(group)?.members;
  }

  // Lookups take any spelling and compare canonical forms; a name without one names nobody.
  private group(group: string): { members?: string[]; slackUsergroup?: string } | undefined {
    const key = canonicalPrincipalName(group);
    return key === undefined ? undefined : this.groups.get(key);
  }

  principalNames(): string[] {
    return [...this.byNameMap.keys()];
  }

  groupNames(): string[] {
    return [...this.groups.keys()];
  }

  byName(name: string): Principal | undefined {
    const key = canonicalPrincipalName(name);
    return key === undefined ? undefined : this.byNameMap.get(key);
  }
  bySpiffeId(spiffeId: string): Principal | undefined {
    return this.bySpiffe.get(spiffeId);
  }
  bySlackUserId(userId: string): Principal | undefined {
    return this.bySlack.get(userId);
  }
  byEmail(email: string): Principal | undefined {
    const key = canonicalPrincipalName(email);
    return key === undefined ? undefined : this.byMail.get(key);
  }
  /** The principal whose oidc_subject is this "sub" (exact: subjects are opaque). */
  byOidcSubject(sub: string): Principal | undefined {
    return this.bySubject.get(sub);
  }

  /** The principal with this GitHub or GitLab login (case-insensitive). */
  byLogin(field: 'github_login' | 'gitlab_login', login: string): Principal | undefined {
    return this.byLoginMap.get(`${field}:${login.toLowerCase()}`);
  }

  async groupMembers(group: string): Promise<string[]> {
    const g = this.group(group);
    if (g === undefined) return [];
    if (g.members) return g.members;
    if (this.slackUsergroups === undefined) return [];
    const userIds = await this.slackUsergroups(g.slackUsergroup as string);
    return userIds.map((id) => this.bySlack.get(id)?.name).filter((n): n is string => n !== undefined);
  }
}
