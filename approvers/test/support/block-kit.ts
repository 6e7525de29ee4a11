// Block Kit validation as Slack's API performs it, for the fake: the limits are
// written out here from Slack's reference (not imported from the code under
// test), and errors use Slack's own wording and json-pointer form.
// https://docs.slack.dev/reference/block-kit/blocks
// https://docs.slack.dev/reference/block-kit/composition-objects/text-object
// https://docs.slack.dev/reference/block-kit/block-elements/button-element
// https://docs.slack.dev/reference/views

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

class Problems {
  readonly list: string[] = [];
  add(message: string, pointer: string): void {
    this.list.push(`${message} [json-pointer:${pointer}]`);
  }
}

function textObject(p: Problems, v: unknown, pointer: string, max: number, only?: 'plain_text'): void {
  if (!isObject(v)) return p.add('must be an object', pointer);
  if (v.type !== 'plain_text' && v.type !== 'mrkdwn')
    return p.add('must be one of plain_text, mrkdwn', `${pointer}/type`);
  if (only !== undefined && v.type !== only) return p.add(`must be ${only}`, `${pointer}/type`);
  if (typeof v.text !== 'string') return p.add('must be a string', `${pointer}/text`);
  if (v.text.length === 0) return p.add('must be more than 0 characters', `${pointer}/text`);
  if (v.text.length > max) p.add(`must be less than ${max + 1} characters`, `${pointer}/text`);
}

function stringMax(p: Problems, v: unknown, pointer: string, max: number, required = false): void {
  if (v === undefined && !required) return;
  if (typeof v !== 'string') return p.add('must be a string', pointer);
  if (v.length > max) p.add(`must be less than ${max + 1} characters`, pointer);
}

function button(p: Problems, el: Json, pointer: string, actionIds: Set<string>): void {
  textObject(p, el.text, `${pointer}/text`, 75, 'plain_text');
  stringMax(p, el.action_id, `${pointer}/action_id`, 255);
  if (typeof el.action_id === 'string') {
    if (actionIds.has(el.action_id)) p.add('duplicate action_id', `${pointer}/action_id`);
    actionIds.add(el.action_id);
  }
  stringMax(p, el.value, `${pointer}/value`, 2000);
  stringMax(p, el.url, `${pointer}/url`, 3000);
  if (el.url !== undefined && (typeof el.url !== 'string' || !/^https?:\/\//.test(el.url)))
    p.add('must be an http(s) URL', `${pointer}/url`);
  if (el.style !== undefined && el.style !== 'primary' && el.style !== 'danger')
    p.add('must be one of primary, danger', `${pointer}/style`);
  if (el.confirm !== undefined) {
    const c = el.confirm;
    if (!isObject(c)) return p.add('must be an object', `${pointer}/confirm`);
    textObject(p, c.title, `${pointer}/confirm/title`, 100, 'plain_text');
    textObject(p, c.text, `${pointer}/confirm/text`, 300);
    textObject(p, c.confirm, `${pointer}/confirm/confirm`, 30, 'plain_text');
    textObject(p, c.deny, `${pointer}/confirm/deny`, 30, 'plain_text');
  }
}

export function validateBlocks(blocks: unknown, surface: 'message' | 'modal'): string[] {
  const p = new Problems();
  if (!Array.isArray(blocks)) {
    p.add('must be an array', '/blocks');
    return p.list;
  }
  const max = surface === 'message' ? 50 : 100;
  if (blocks.length > max) p.add(`no more than ${max} items allowed`, '/blocks');
  const blockIds = new Set<string>();
  const actionIds = new Set<string>();
  blocks.forEach((b, i) => {
    const at = `/blocks/${i}`;
    if (!isObject(b)) return p.add('must be an object', at);
    stringMax(p, b.block_id, `${at}/block_id`, 255);
    if (typeof b.block_id === 'string') {
      if (blockIds.has(b.block_id)) p.add('duplicate block_id', `${at}/block_id`);
      blockIds.add(b.block_id);
    }
    switch (b.type) {
      case 'header':
        textObject(p, b.text, `${at}/text`, 150, 'plain_text');
        break;
      case 'section':
        if (b.text === undefined && b.fields === undefined) p.add('must provide either text or fields', at);
        if (b.text !== undefined) textObject(p, b.text, `${at}/text`, 3000);
        if (b.fields !== undefined) {
          if (!Array.isArray(b.fields)) p.add('must be an array', `${at}/fields`);
          else {
            if (b.fields.length > 10) p.add('no more than 10 items allowed', `${at}/fields`);
            b.fields.forEach((f, j) => textObject(p, f, `${at}/fields/${j}`, 2000));
          }
        }
        break;
      case 'context':
        if (!Array.isArray(b.elements) || b.elements.length === 0)
          p.add('must provide at least 1 element', `${at}/elements`);
        else {
          if (b.elements.length > 10) p.add('no more than 10 items allowed', `${at}/elements`);
          b.elements.forEach((e, j) => textObject(p, e, `${at}/elements/${j}`, 3000));
        }
        break;
      case 'actions':
        if (!Array.isArray(b.elements) || b.elements.length === 0)
          p.add('must provide at least 1 element', `${at}/elements`);
        else {
          if (b.elements.length > 25) p.add('no more than 25 items allowed', `${at}/elements`);
          b.elements.forEach((e, j) => {
            if (!isObject(e) || e.type !== 'button') return p.add('unsupported element type', `${at}/elements/${j}`);
            button(p, e, `${at}/elements/${j}`, actionIds);
          });
        }
        break;
      case 'divider':
        break;
      case 'input': {
        if (surface !== 'modal') {
          p.add('input blocks are only allowed in modals and home tabs', `${at}/type`);
          break;
        }
        textObject(p, b.label, `${at}/label`, 2000, 'plain_text');
        if (b.hint !== undefined) textObject(p, b.hint, `${at}/hint`, 2000, 'plain_text');
        const el = b.element;
        if (!isObject(el) || el.type !== 'plain_text_input') {
          p.add('unsupported element type', `${at}/element`);
          break;
        }
        stringMax(p, el.action_id, `${at}/element/action_id`, 255);
        if (
          el.max_length !== undefined &&
          (typeof el.max_length !== 'number' || el.max_length < 1 || el.max_length > 3000)
        ) {
          p.add('must be between 1 and 3000', `${at}/element/max_length`);
        }
        break;
      }
      default:
        p.add(`unsupported type ${JSON.stringify(b.type)}`, `${at}/type`);
    }
  });
  return p.list;
}

export function validateModal(view: unknown): string[] {
  const p = new Problems();
  if (!isObject(view)) {
    p.add('must be an object', '/view');
    return p.list;
  }
  if (view.type !== 'modal') p.add('must be modal', '/view/type');
  textObject(p, view.title, '/view/title', 24, 'plain_text');
  if (view.submit !== undefined) textObject(p, view.submit, '/view/submit', 24, 'plain_text');
  if (view.close !== undefined) textObject(p, view.close, '/view/close', 24, 'plain_text');
  stringMax(p, view.private_metadata, '/view/private_metadata', 3000);
  stringMax(p, view.callback_id, '/view/callback_id', 255);
  p.list.push(
    ...validateBlocks(view.blocks, 'modal').map((e) =>
      e.replace('[json-pointer:/blocks', '[json-pointer:/view/blocks'),
    ),
  );
  return p.list;
}
