// Limits the CLI names in --help, apart from the MCP server code so --help does not load it.
export const MAX_WAIT_SECONDS = 600;
