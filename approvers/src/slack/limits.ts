// Slack's documented Block Kit and Web API limits, in one place: the card
// builder stays inside them and the test fake enforces them.
// https://docs.slack.dev/reference/block-kit/blocks, .../composition-objects, .../views
export const SLACK_LIMITS = {
  messageBlocks: 50,
  modalBlocks: 100,
  /** Any text object, unless a tighter limit below applies. */
  text: 3000,
  sectionFields: 10,
  sectionFieldText: 2000,
  headerText: 150,
  contextElements: 10,
  actionsElements: 25,
  buttonText: 75,
  buttonValue: 2000,
  actionId: 255,
  blockId: 255,
  confirmTitle: 100,
  confirmText: 300,
  confirmButton: 30,
  inputLabel: 2000,
  inputHint: 2000,
  placeholder: 150,
  plainTextInputMaxLength: 3000,
  modalTitle: 24,
  modalButton: 24,
  privateMetadata: 3000,
  callbackId: 255,
  /** chat.postMessage / chat.update top-level `text`: longer answers msg_too_long. */
  messageText: 40_000,
} as const;
