// The approver port: how the broker reaches people. Channels (the CLI/gRPC
// approver, Slack) implement it; the broker core never imports a channel's SDK.
export {};
