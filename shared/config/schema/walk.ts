import type { z } from 'zod';
import { FIELDS, type FieldMeta, SECTIONS } from './field.js';

/** One setting of a config schema, for the docs: its dotted name, default and metadata. */
export interface FieldInfo {
  path: string;
  schema: z.ZodType;
  default: unknown;
  meta: FieldMeta;
}

export interface SectionInfo {
  name: string;
  description: string;
  fields: FieldInfo[];
}

interface Shaped {
  shape: Record<string, z.ZodType>;
}

/**
 * The settings of a config schema, grouped by section; top-level settings (`method`) form a
 * section named '' of their own. Order is the schema's, which is the resolved config's key order.
 */
export function sectionsOf(root: z.ZodType): SectionInfo[] {
  const out: SectionInfo[] = [];
  const top: FieldInfo[] = [];
  for (const [name, child] of Object.entries((root as unknown as Shaped).shape)) {
    const s = SECTIONS.get(child);
    if (s) {
      const inner = (child as unknown as z.ZodPrefault<z.ZodType>).unwrap() as unknown as Shaped;
      out.push({ name, description: s.description, fields: fieldsOf(inner, name) });
    } else top.push(field(name, child));
  }
  return top.length ? [{ name: '', description: '', fields: top }, ...out] : out;
}

function fieldsOf(o: Shaped, prefix: string): FieldInfo[] {
  return Object.entries(o.shape).map(([k, child]) => field(`${prefix}.${k}`, child));
}

function field(path: string, schema: z.ZodType): FieldInfo {
  const meta = FIELDS.get(schema);
  if (!meta) throw new Error(`config schema: ${path} has no description (declare it with schema/field.ts)`);
  return { path, schema, default: schema.parse(undefined), meta };
}
