// The collections genarun generated (src/content.config.ts), read generically: every page
// collection is a list of entries with id, index, label and tags, plus the tree's fields.
import { getCollection, getEntry } from 'astro:content';

export type Entry = {
  id: string;
  collection: string;
  data: Record<string, unknown> & { id: string; index: number; label: string; tags: string[] };
};

/** The names of the page collections, in the tree's order. */
export async function collectionNames(): Promise<string[]> {
  const site = await getEntry('site', 'site');
  return (site?.data.collections ?? []).map((c: { name: string }) => c.name);
}

/** Every entry of one collection, in the run's order. */
export async function entriesOf(name: string): Promise<Entry[]> {
  // The collection names are generated per tree, so they are not known to this file's types.
  const entries = (await getCollection(name as never)) as unknown as Entry[];
  return [...entries].sort((a, b) => a.data.index - b.data.index);
}

/** Every entry of every page collection. */
export async function allEntries(): Promise<Entry[]> {
  const out: Entry[] = [];
  for (const name of await collectionNames()) out.push(...(await entriesOf(name)));
  return out;
}
