// The --output choices, apart from the printing code so --help does not load it.
export const OUTPUT_MODES = ['token', 'json', 'env'] as const;
export type OutputMode = (typeof OUTPUT_MODES)[number];
