// The JSON Schema of the policy file, for editors (YAML language servers) and
// CI linters. Generated from the zod schema, so the two cannot drift:
// docs/policy.schema.json is its output (`countersign-broker policy schema`), and
// a test fails when the committed file differs.
import { z } from 'zod';
import { policySchema } from './schema.js';

export function policyJsonSchema(): Record<string, unknown> {
  const generated = z.toJSONSchema(policySchema, {
    io: 'input',
    unrepresentable: 'any',
    target: 'draft-2020-12',
  }) as Record<string, unknown>;
  return {
    $schema: generated.$schema,
    title: 'Countersign policy',
    description:
      'Rules that decide deny / allow / approve / break_glass for each operation request. See docs/policy.md.',
    ...Object.fromEntries(Object.entries(generated).filter(([k]) => k !== '$schema')),
  };
}

export const policyJsonSchemaText = (): string => `${JSON.stringify(policyJsonSchema(), null, 2)}\n`;
