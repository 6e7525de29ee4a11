// Where a request's card goes: the rule's Slack channels (or the default
// channel), and approvers' direct messages when the rule asks for them or no
// channel is known. The requester and the human it acts for are never sent a
// card they could not act on.
import type { ApprovalRequestView, PrincipalDirectory } from '../port.js';

export type Target = { kind: 'channel'; channel: string } | { kind: 'dm'; user: string };

/** A stable name for a target: a hash field and, hashed, part of a job id. */
export const targetKey = (t: Target): string => (t.kind === 'channel' ? `c.${t.channel}` : `u.${t.user}`);

/** Where chat.postMessage sends it (a user id opens the app's DM with them). */
export const targetChannel = (t: Target): string => (t.kind === 'channel' ? t.channel : t.user);

export async function targetsFor(r: ApprovalRequestView, directory: PrincipalDirectory, defaultChannel: string | undefined): Promise<Target[]> {
  const channels = r.notify.slackChannels.length > 0 ? r.notify.slackChannels : defaultChannel === undefined ? [] : [defaultChannel];
  const targets: Target[] = [...new Set(channels)].map((channel) => ({ kind: 'channel', channel }));
  if (r.notify.directMessages || channels.length === 0) {
    const names = new Set(r.approvers);
    for (const group of r.groups) for (const member of await directory.groupMembers(group)) names.add(member);
    const excluded = new Set([directory.bySpiffeId(r.requester)?.name, r.onBehalfOf, directory.byEmail(r.onBehalfOf)?.name]);
    const users = new Set<string>();
    for (const name of names) {
      if (excluded.has(name)) continue;
      const user = directory.byName(name)?.slackUserId;
      if (user !== undefined) users.add(user);
    }
    for (const user of users) targets.push({ kind: 'dm', user });
  }
  return targets;
}
