// The layering in DESIGN.md, checked by dependency-cruiser (`npm run depcheck`, part of
// `npm test`). Only the packages' src/ is checked; tests may reach across. No module may
// reach itself again through its imports (no-circular), type-only imports included: two
// modules that need each other's types share them through a leaf module instead.

// Inside the broker, top to bottom: a folder (or top-level file) imports only folders in
// tiers below its own, never its own tier's other folders, so there are no cycles between
// folders. DESIGN.md: api -> requests -> policy/credentials -> audit -> identity/redis/config.
const BROKER_TIERS = [
  ['index\\.ts$', 'cli/'], // entry points
  ['app\\.ts$', 'dev/'], // wiring, dev mode
  ['channels/'], // approver channels (Slack) on top of the HTTP surface
  ['api/', 'console/'], // gRPC + HTTP surface, approver console
  ['exchange/'], // OIDC token -> SVID exchange (identity.oidc): rate limits, principals, audit
  ['requests/'], // the request state machine
  ['credentials/', 'passkeys/'], // issuing and redeeming credentials; passkey store
  ['policy/'],
  ['audit/'],
  ['config/'],
  ['identity/', 'redis/'], // redis/ holds the Lua script loader every layer above uses
  ['observability/', 'errors\\.ts$', 'clock\\.ts$', 'ids\\.ts$'], // shared leaves
];

const broker = (part) => `^broker/src/${part}`;
const brokerLayerRules = BROKER_TIERS.flatMap((tier, i) =>
  tier.map((part) => ({
    name: 'broker-layers',
    comment: `broker/src/${part.replace('\\.ts$', '.ts')} may import only the tiers below it (see BROKER_TIERS)`,
    severity: 'error',
    from: { path: broker(part) },
    to: { path: [...BROKER_TIERS.slice(0, i).flat(), ...tier.filter((p) => p !== part)].map(broker) },
  })),
);

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'no import cycles at all, also within a folder: move what both sides need to a leaf module',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    // Packages point one way: agents -> proto; approvers -> proto; broker -> proto, approvers.
    {
      name: 'proto-imports-no-package',
      severity: 'error',
      from: { path: '^proto/src/' },
      to: { path: '^(broker|approvers|agents)/' },
    },
    {
      name: 'agents-not-broker',
      comment: 'the requester side never imports the broker (or the approvers)',
      severity: 'error',
      from: { path: '^agents/src/' },
      to: { path: '^(broker|approvers)/' },
    },
    {
      name: 'approvers-not-broker',
      comment: 'channels reach the broker through the approver port only',
      severity: 'error',
      from: { path: '^approvers/src/' },
      to: { path: '^(broker|agents)/' },
    },
    { name: 'broker-not-agents', severity: 'error', from: { path: '^broker/src/' }, to: { path: '^agents/' } },
    // Slack lives in approvers/slack; the broker core never imports it (channels/ adapts it).
    {
      name: 'slack-only-in-approvers-slack',
      severity: 'error',
      from: { path: '^approvers/src/', pathNot: '^approvers/src/slack/' },
      to: { path: 'node_modules/@slack/' },
    },
    {
      name: 'broker-core-not-slack',
      severity: 'error',
      from: { path: '^broker/src/', pathNot: '^broker/src/channels/' },
      to: { path: ['node_modules/@slack/', '^approvers/src/slack/'] },
    },
    ...brokerLayerRules,
    {
      name: 'broker-unplaced',
      comment: 'every broker/src folder has a place in BROKER_TIERS (add a new one there)',
      severity: 'error',
      from: { path: '^broker/src/', pathNot: BROKER_TIERS.flat().map(broker) },
      to: { path: '^broker/src/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)(dist|test)/' },
    tsPreCompilationDeps: true, // type-only imports count: a type is a dependency too
    tsConfig: { fileName: 'tsconfig.json' },
    // Workspace packages resolve to their TypeScript sources, as in the type check.
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['countersign-source', 'import', 'types', 'node', 'default'],
      extensions: ['.ts', '.js', '.json'],
    },
  },
};
