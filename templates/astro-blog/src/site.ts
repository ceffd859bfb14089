// Helpers shared by the pages: links, theme values checked before they reach CSS.
import theme from './theme.json';

/** A link inside the site, under Astro's base path. */
export function href(path: string): string {
  const base = import.meta.env.BASE_URL.replace(/\/$/, '');
  return `${base}/${path.replace(/^\//, '')}`;
}

/** The URL of a file exported beside site-data.json (images: `assets/...`). */
export function dataUrl(src: string): string {
  return href(`data/${src}`);
}

// Colours come from a site-gen node's output (model text): only plain colour values reach the
// stylesheet; anything else (`red;} body{...`) falls back to the default.
const COLOR = /^(#[0-9a-fA-F]{3,8}|[a-zA-Z]{3,20}|rgb\(\s*\d{1,3}\s*,\s*\d{1,3}\s*,\s*\d{1,3}\s*\))$/;
const DEFAULTS = { accent: '#2f6f4f', background: '#fbfaf7', text: '#1d1d1b' };

export function colors(): Record<'accent' | 'background' | 'text', string> {
  const given = (theme.colors ?? {}) as Record<string, unknown>;
  const pick = (key: keyof typeof DEFAULTS) => {
    const value = given[key];
    return typeof value === 'string' && COLOR.test(value.trim()) ? value.trim() : DEFAULTS[key];
  };
  return { accent: pick('accent'), background: pick('background'), text: pick('text') };
}

export const themeText = {
  title: typeof theme.title === 'string' ? theme.title : '',
  tagline: typeof theme.tagline === 'string' ? theme.tagline : '',
  about: typeof theme.about === 'string' ? theme.about : '',
};

/** Keys every collection entry has; the page shows the others as the entry's fields. */
export const ENTRY_KEYS = new Set(['id', 'index', 'label', 'tags']);

export type Image = { kind: 'image'; src: string; width?: number | null; height?: number | null; alt?: string | null };

// genarun exports images only as `assets/<name>.png` beside site-data.json; an object shaped
// like an image in a model's own JSON can name nothing else.
const IMAGE_SRC = /^assets\/[A-Za-z0-9_.-]+\.png$/;

/** Is this value an exported image ({kind: 'image', src, width, height, alt})? */
export function isImage(value: unknown): value is Image {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as { kind?: unknown; src?: unknown };
  return v.kind === 'image' && typeof v.src === 'string' && IMAGE_SRC.test(v.src);
}

/** The first image among an entry's fields (its cover), or undefined. */
export function firstImage(data: Record<string, unknown>) {
  for (const value of Object.values(data)) {
    if (isImage(value)) return value;
  }
  return undefined;
}

/** Paragraphs of a text: split on blank lines. */
export function paragraphs(text: string): string[] {
  return text.split(/\n\s*\n/).map((p) => p.trim()).filter(Boolean);
}

/** Field names as headings: `alt_text` -> `Alt text`. */
export function heading(key: string): string {
  const words = key.replace(/[_-]+/g, ' ').trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** A tag as a URL segment. */
export function tagSlug(tag: string): string {
  return tag.normalize('NFKD').toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'tag';
}
