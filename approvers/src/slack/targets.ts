// Where a request's card goes: the rule's Slack channels (or the default
// channel), and approvers' direct messages when the rule asks for them or no
// channel is known. The requester and the human it acts for are never sent a
// card they could not act on.
import type { ApprovalRequestView, BreakGlassNotice, PrincipalDirectory } from '../port.js';

export type Target = { kind: 'channel'; channel: string } | { kind: 'dm'; user: string };

/** A stable name for a target: a hash field and, hashed, part of a job id. */
export const targetKey = (t: Target): string => (t.kind === 'channel' ? `c.${t.channel}` : `u.${t.user}`);

/** Where chat.postMessage sends it (a user id opens the app's DM with them). */
export const targetChannel = (t: Target): string => (t.kind === 'channel' ? t.channel : t.user);

/** The Slack user ids of the named approvers and the members of the groups, without the excluded principals. */
async function approverUsers(
  approvers: string[],
  groups: string[],
  directory: PrincipalDirectory,
  excluded: Set<string | undefined>,
): Promise<string[]> {
  const names = new Set(approvers);
  for (const group of groups) for (const member of await directory.groupMembers(group)) names.add(member);
  const users = new Set<string>();
  for (const name of names) {
    if (excluded.has(name)) continue;
    const user = directory.byName(name)?.slackUserId;
    if (user !== undefined) users.add(user);
  }
  return [...users];
}

const channelsOf = (slackChannels: string[], defaultChannel: string | undefined): string[] =>
  slackChannels.length > 0 ? [...new Set(slackChannels)] : defaultChannel === undefined ? [] : [defaultChannel];

export async function targetsFor(
  r: ApprovalRequestView,
  directory: PrincipalDirectory,
  defaultChannel: string | undefined,
): Promise<Target[]> {
  const channels = channelsOf(r.notify.slackChannels, defaultChannel);
  const targets: Target[] = channels.map((channel) => ({ kind: 'channel', channel }));
  if (r.notify.directMessages || channels.length === 0) {
    // on_behalf_of is canonical (a name or an address); the directory maps either to the person.
    const excluded = new Set([
      directory.bySpiffeId(r.requester)?.name,
      r.onBehalfOf,
      directory.byName(r.onBehalfOf)?.name,
      directory.byEmail(r.onBehalfOf)?.name,
    ]);
    for (const user of await approverUsers(r.approvers, r.groups, directory, excluded))
      targets.push({ kind: 'dm', user });
  }
  return targets;
}

/**
 * Where a break-glass use is announced: the rule's channels (or the default
 * channel) and, always, a direct message to every approver and group member
 * the rule names. Nobody is left out: a notice asks nothing of anyone.
 */
export async function breakGlassTargets(
  n: BreakGlassNotice,
  directory: PrincipalDirectory,
  defaultChannel: string | undefined,
): Promise<Target[]> {
  const targets: Target[] = channelsOf(n.notify.slackChannels, defaultChannel).map((channel) => ({
    kind: 'channel',
    channel,
  }));
  for (const user of await approverUsers(n.approvers, n.groups, directory, new Set()))
    targets.push({ kind: 'dm', user });
  return targets;
}
